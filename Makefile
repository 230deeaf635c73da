# AgentFlow — the two front-door commands are `make run` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed-stamp
TS_SDK := sdk/typescript
TS_STAMP := $(TS_SDK)/node_modules/.package-lock.json
PG_CTL := $(firstword $(wildcard /usr/lib/postgresql/*/bin/pg_ctl))

.PHONY: run test unit integration e2e lint openapi bench bench-compare bench-distributed setup setup-distributed system-deps \
	up-distributed down-distributed clean go-tools

setup: $(STAMP) system-deps $(TS_STAMP)

$(STAMP): pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || $(PY) -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	uv sync --frozen --extra dev --python $(PY)
	@touch $@

# the TypeScript SDK's build and test tools (tsc, openapi-typescript), exactly as the committed lockfile
# pins them, from the npm registry; Node 20+ (Debian's nodejs/npm when none is installed)
$(TS_STAMP): $(TS_SDK)/package.json $(TS_SDK)/package-lock.json
	@command -v npm >/dev/null 2>&1 || (apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null)
	cd $(TS_SDK) && npm ci --no-audit --no-fund
	@touch $@

# Postgres binaries for the cluster `agentflow up` and the tests own (Postgres refuses root:
# the cluster runs as the `postgres` OS user, which the Debian package creates); redis-server for
# the distributed worker fleet's broker (tests start their own on a free port); MariaDB for the legacy
# CDC source tests (they start their own mariadbd as the `mysql` user; the package's own service is
# stopped and disabled so nothing holds port 3306).
system-deps:
	@if [ -z "$(PG_CTL)" ] || ! id postgres >/dev/null 2>&1 || ! command -v redis-server >/dev/null 2>&1 || \
	    [ ! -x /usr/sbin/mariadbd ] || ! id mysql >/dev/null 2>&1; then \
	  echo "installing PostgreSQL server binaries, redis-server and MariaDB (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql redis-server \
	    mariadb-server mariadb-client >/dev/null; \
	  (service mariadb stop || systemctl stop mariadb) >/dev/null 2>&1 || true; \
	  (systemctl disable mariadb || update-rc.d mariadb disable) >/dev/null 2>&1 || true; \
	fi

# The distributed engines: Kafka/Connect/Debezium/Flink jars from Maven Central and PyFlink in its own
# venv, cached under deploy/.cache (first run ~2 min of downloads). Java 17 and Maven come from Debian.
setup-distributed: setup
	@command -v java >/dev/null 2>&1 && command -v mvn >/dev/null 2>&1 || (apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jdk-headless maven >/dev/null)
	$(VENV)/bin/python -m connectors.jars
	$(VENV)/bin/python -c "from services.distributed.flink_job import ensure_venv; ensure_venv()"

# The Go-built tools the deploy, metrics and tracing tests run (promtool, helm, kubeconform, docker-compose,
# jaeger), pinned and built from source through the Go module proxy into deploy/.cache/go-bin
# (tests/go_tools.py; the first build takes minutes, later ones reuse Go's build cache). Needs Go >= 1.21 on PATH (the machine's Go 1.26;
# an older one fetches the 1.26 toolchain the tools ask for); Debian 12's golang-go (1.19) is too old.
go-tools: setup
	$(VENV)/bin/python -m tests.go_tools

run: setup
	$(VENV)/bin/agentflow up --demo

# Postgres (own cluster) + Kafka + Connect/Debezium + Flink + the API, in the background; the log
# .agentflow/up-distributed.log is appended to, and streamed here until the API serves (or the start
# fails). `make down-distributed` stops all of it.
UP_LOG := .agentflow/up-distributed.log
up-distributed: setup-distributed
	@mkdir -p .agentflow
	@echo "=== make up-distributed $$(date -u +%FT%TZ)" >> $(UP_LOG)
	@from=$$(wc -l < $(UP_LOG)); \
	nohup $(VENV)/bin/agentflow up --distributed >> $(UP_LOG) 2>&1 & up=$$!; \
	tail -n +$$from -f $(UP_LOG) & tailer=$$!; ok=1; \
	for i in $$(seq 1 1200); do \
	  if tail -n +$$from $(UP_LOG) | grep -q "AgentFlow is serving"; then ok=0; break; fi; \
	  kill -0 $$up 2>/dev/null || break; sleep 0.5; done; \
	sleep 1; kill $$tailer 2>/dev/null; \
	if [ $$ok = 0 ]; then echo "agentflow runs in the background (pid $$up, log $(UP_LOG)); stop it with: make down-distributed"; \
	else echo "agentflow up --distributed did not come up; see $(UP_LOG)"; fi; exit $$ok

down-distributed: $(STAMP)
	$(VENV)/bin/agentflow down

test: setup setup-distributed lint go-tools
	$(VENV)/bin/pytest -q -p no:cacheprovider --durations=25

unit: setup
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/unit

integration: setup-distributed
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/integration

e2e: setup-distributed
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/e2e

# docs/openapi.json: the schema the API serves (a test fails when they differ), and the TypeScript SDK's
# types generated from it (sdk/typescript/src/schema.d.ts; its node tests fail when they differ)
openapi: setup
	$(VENV)/bin/python -m services.api.app > docs/openapi.json
	cd $(TS_SDK) && npm run --silent generate

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy domain commands projections readmodels connectors services migrations bench \
	  sdk/python/src/agentflow_client
	cd $(TS_SDK) && npx --no-install tsc -p tsconfig.json --noEmit

bench: setup
	@command -v wrk >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null)
	$(VENV)/bin/python -m bench.run
	$(VENV)/bin/python -m bench.webhooks
	$(VENV)/bin/python -m bench.legacy_cdc --deployment embedded

# the embedded HTTP figures of BASELINE (a git ref) and of HEAD, alternating on this machine
bench-compare: setup
	@command -v wrk >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null)
	$(VENV)/bin/python -m bench.compare --baseline $(or $(BASELINE),main) $(if $(CANDIDATE_ENV),--candidate-env $(CANDIDATE_ENV)) $(if $(ALSO),--also $(ALSO)) $(if $(ROUNDS),--rounds $(ROUNDS))

bench-distributed: setup-distributed
	$(VENV)/bin/python -m bench.distributed
	$(VENV)/bin/python -m bench.legacy_cdc --deployment distributed

clean:
	rm -rf $(VENV) .agentflow build *.egg-info

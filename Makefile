# AgentFlow — the two front-door commands are `make run` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed-stamp
PG_CTL := $(firstword $(wildcard /usr/lib/postgresql/*/bin/pg_ctl))

.PHONY: run test unit integration e2e lint bench setup system-deps clean

setup: $(STAMP) system-deps

$(STAMP): pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || $(PY) -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	uv sync --frozen --extra dev --python $(PY)
	@touch $@

# Postgres binaries for the cluster `agentflow up` and the tests own (Postgres refuses root:
# the cluster runs as the `postgres` OS user, which the Debian package creates).
system-deps:
	@if [ -z "$(PG_CTL)" ] || ! id postgres >/dev/null 2>&1; then \
	  echo "installing PostgreSQL server binaries (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	fi

run: setup
	$(VENV)/bin/agentflow up --demo

test: setup lint
	$(VENV)/bin/pytest -q -p no:cacheprovider

unit: setup
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/unit

integration: setup
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/integration

e2e: setup
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/e2e

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy domain commands projections readmodels connectors services migrations bench

bench: setup
	@command -v wrk >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null)
	$(VENV)/bin/python -m bench.run

clean:
	rm -rf $(VENV) .agentflow build *.egg-info

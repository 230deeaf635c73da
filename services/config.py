"""Every ``AGENTFLOW_*`` setting, read once from the environment here and nowhere else.

``settings_from_env()`` builds the server's :class:`Settings` (``agentflow up``, ``agentflow worker``,
the benchmarks and the tests all go through it); ``client_settings_from_env()`` the admin CLIs' target.
``ENV_VARS`` lists every variable; docs/configuration.md is ``configuration_table()``, and a test keeps
both equal to the variables the code reads.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from connectors.database import DEFAULT_DB_THREADS
from connectors.secret_box import KEY_FILE, SecretBox, SecretKeyError

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_ACCESS_LOG_SAMPLE = 0.01  # of 2xx answers (docs/operations.md "Logs")

# seconds before each webhook attempt: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h
DEFAULT_RETRY_SCHEDULE: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
DEFAULT_MAX_STREAMS = 5
# per API key and minute (docs/security.md "Rate limits"): a web store's checkout traffic is far below the
# write budget; a key that needs more gets its own deployment setting
DEFAULT_READ_RPM = 6000
DEFAULT_WRITE_RPM = 3000
DEFAULT_AUTH_FAILURES = 30
DEFAULT_TIME_TRAVEL_MAX_EVENTS = 100_000

# variable -> what it sets (docs/configuration.md is generated from the same words)
ENV_VARS: dict[str, str] = {
    "AGENTFLOW_DATA_DIR": "data directory of `agentflow up` (default `.agentflow`)",
    "AGENTFLOW_HOST": "address the API binds (default 127.0.0.1)",
    "AGENTFLOW_PORT": "port the API binds (default 8000)",
    "AGENTFLOW_METRICS_PORT": "serve Prometheus `/metrics` on this port of AGENTFLOW_HOST instead of the "
    "API's (unset: on the API's port; `agentflow worker`: unset serves none)",
    "AGENTFLOW_DATABASE_URL": "an existing Postgres 15+ instead of the own cluster",
    "AGENTFLOW_CLICKHOUSE_DSN": "`http(s)://` ClickHouse server instead of embedded chdb",
    "AGENTFLOW_API_KEYS": "bootstrap `key:tenant` pairs, comma-separated, scopes read + write (more keys: "
    "`agentflow keys`); without it a development admin key is created",
    "AGENTFLOW_ADMIN_API_KEYS": "keys of AGENTFLOW_API_KEYS that also get the admin scope, comma-separated "
    "(unset: none; admin routes answer 403 to keys without it)",
    "AGENTFLOW_OPERATOR_API_KEYS": "keys of AGENTFLOW_API_KEYS that also get admin and operator (every "
    "tenant, rebuilds), comma-separated (unset: none)",
    "AGENTFLOW_KEY_ROTATION_GRACE_S": "seconds a rotated-out API key stays valid by default (86400)",
    "AGENTFLOW_SECRET_KEYS": "keys encrypting stored secrets, newest first, comma-separated (unset: the "
    f"data dir's `{KEY_FILE}` file; docs/security.md)",
    "AGENTFLOW_REPORTING_CURRENCY": "default currency of money metrics (USD)",
    "AGENTFLOW_RATE_LIMIT_READ_RPM": f"reads a minute per API key, sliding window; `0`: no limit "
    f"({DEFAULT_READ_RPM})",
    "AGENTFLOW_RATE_LIMIT_WRITE_RPM": f"commands and admin requests a minute per API key; `0`: no limit "
    f"({DEFAULT_WRITE_RPM})",
    "AGENTFLOW_RATE_LIMIT_RPM": "older name: sets both budgets above when they are unset",
    "AGENTFLOW_AUTH_FAILURES_PER_MINUTE": "refused keys a client address may send a minute before its "
    f"requests answer 429; `0`: no throttling ({DEFAULT_AUTH_FAILURES})",
    "AGENTFLOW_RATE_LIMIT_REDIS_URL": "Redis that holds the budgets, shared by several API processes "
    "(unset: AGENTFLOW_REDIS_URL, else in process)",
    "AGENTFLOW_MAX_BODY_BYTES": f"largest request body in bytes, else 413 ({DEFAULT_MAX_BODY_BYTES})",
    "AGENTFLOW_CORS_ORIGINS": "browser origins that may call the API, comma-separated, or `*` (unset: none)",
    "AGENTFLOW_CORS_CREDENTIALS": "`1` lets those origins send credentials (refused with `*`)",
    "AGENTFLOW_TRUST_FORWARDED_PROTO": "`1`: the proxy in front sets X-Forwarded-Proto (`https` sends HSTS)",
    "AGENTFLOW_ACCESS_LOG_SAMPLE": "fraction of 2xx answers that get an access log line; every other answer "
    f"gets one ({DEFAULT_ACCESS_LOG_SAMPLE})",
    "AGENTFLOW_ICEBERG": "`0` leaves the Iceberg lake out",
    "AGENTFLOW_LAKE_MAINTAIN_INTERVAL_S": "seconds between scheduled lake maintenance runs in the worker "
    "fleet; `0`: none (3600)",
    "AGENTFLOW_LAKE_SNAPSHOT_MAX_AGE_S": "lake maintenance expires Iceberg snapshots older than this (3600)",
    "AGENTFLOW_LAKE_RETAIN_SNAPSHOTS": "lake maintenance keeps at least this many newest snapshots (10)",
    "AGENTFLOW_LAKE_TARGET_FILE_MB": "lake compaction rewrites files under 75% of this into files of up to "
    "this size (64)",
    "AGENTFLOW_WORKERS": "`0` leaves the embedded webhook worker fleet out",
    "AGENTFLOW_ALERTS": "`0` leaves alert evaluation (workers and scheduler) out",
    "AGENTFLOW_ALERT_SWEEP_S": "seconds between alert sweeps (5)",
    "AGENTFLOW_ALERT_WORKER_THREADS": "alert-evaluating worker threads of each serving process (2)",
    "AGENTFLOW_LEGACY_SOURCES": "`0` leaves legacy-database capture out",
    "AGENTFLOW_LEGACY_ALLOW_PRIVATE": "`1` lets legacy sources name loopback/private database hosts",
    "AGENTFLOW_SSE_MAX_STREAMS": f"concurrent SSE streams per process ({DEFAULT_MAX_STREAMS})",
    "AGENTFLOW_SLO_FILE": "YAML file replacing the default service-level objectives",
    "AGENTFLOW_SLO_OVERRIDES": "JSON object adjusting objectives by name",
    "AGENTFLOW_TIME_TRAVEL_MAX_EVENTS": f"events an `as_of` read may fold ({DEFAULT_TIME_TRAVEL_MAX_EVENTS})",
    "AGENTFLOW_DB_THREADS": f"threads (and pooled connections) for database work ({DEFAULT_DB_THREADS})",
    "AGENTFLOW_LOG_LEVEL": "log level (INFO)",
    "AGENTFLOW_KAFKA_BOOTSTRAP_SERVERS": "with `--external`: the Kafka to read serving upserts from",
    "AGENTFLOW_CONNECT_URL": "with `--external`: register the Debezium connector on this Kafka Connect",
    "AGENTFLOW_FLINK_REST_URL": "with `--external`: the Flink REST API (`/v1/health` reads the job there)",
    "AGENTFLOW_KAFKA_TOPIC_PREFIX": "topics `<prefix>.events`, `.serving`, `.deadletter` (agentflow)",
    "AGENTFLOW_LOADER_GROUP": "consumer group of the serving loader (default: one per host)",
    "AGENTFLOW_REDIS_URL": "the Redis broker of `agentflow worker` and of the API's alert workers "
    "(unset: dramatiq-postgres)",
    "AGENTFLOW_WORKER_THREADS": "webhook worker threads per process (8)",
    "AGENTFLOW_WEBHOOK_ALLOW_PRIVATE": "`1` lets webhooks reach loopback/private addresses",
    "AGENTFLOW_WEBHOOK_RETRY_SCHEDULE": "seconds before each delivery attempt, comma-separated",
    "AGENTFLOW_WEBHOOK_TIMEOUT_S": "seconds per delivery attempt (10)",
    "AGENTFLOW_WEBHOOK_LEASE_MARGIN_S": "seconds an endpoint lease outlives an attempt (10)",
    "AGENTFLOW_WEBHOOK_SWEEP_S": "seconds between relay sweeps for due work (1)",
    "AGENTFLOW_WEBHOOK_RELAY_POLL_S": "seconds between relay polls of the event store (0.1)",
    "AGENTFLOW_PG_BIN": "directory of initdb/pg_ctl/postgres for the own cluster",
    "AGENTFLOW_JVM_OPTS": "extra JVM options for the embedded Debezium engine (legacy sources)",
    "AGENTFLOW_URL": "client commands (query and admin CLIs, `agentflow mcp`): the running API (default "
    "http://HOST:PORT)",
    "AGENTFLOW_API_KEY": "client commands (query and admin CLIs, `agentflow mcp`): the key they send",
    "AGENTFLOW_CONFIG": "the CLIs' config file, TOML with `url` and `api_key` (default "
    "`~/.config/agentflow/config.toml`); flags and the two variables above win over it",
}


class ConfigError(ValueError):
    """A setting has a value AgentFlow cannot use; the message names the variable."""


def _flag(raw: str | None, default: bool) -> bool:
    if raw is None or raw.strip() == "":
        return default
    return raw.strip().lower() not in ("0", "false", "no", "off")


def _number(env: Mapping[str, str], name: str, kind: type[float] | type[int], minimum: float) -> Any:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = kind(raw)
    except ValueError as exc:
        what = "a whole number" if kind is int else "a number"
        raise ConfigError(f"{name} must be {what}, not {raw!r}") from exc
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}")
    return value


def parse_api_keys(raw: str | None) -> dict[str, str]:
    """``key:tenant`` pairs, comma-separated."""
    keys: dict[str, str] = {}
    for item in (raw or "").split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, tenant = item.partition(":")
        if not sep or not key.strip() or not tenant.strip():
            raise ConfigError(f"AGENTFLOW_API_KEYS entry {item!r} is not key:tenant")
        keys[key.strip()] = tenant.strip()
    return keys


def _default(value: Any, default: Any) -> Any:
    return default if value is None else value


def _key_list(env: Mapping[str, str], name: str, keys: dict[str, str]) -> frozenset[str]:
    """Comma-separated keys, each one of AGENTFLOW_API_KEYS (a scope for a key nobody holds is a typo)."""
    named = frozenset(k.strip() for k in (env.get(name) or "").split(",") if k.strip())
    unknown = named - keys.keys()
    if unknown and keys:
        raise ConfigError(f"{name} names {len(unknown)} key(s) that are not in AGENTFLOW_API_KEYS")
    return named


def parse_secret_keys(raw: str | None) -> tuple[str, ...]:
    """Fernet keys, newest first, comma-separated (checked here; the message never shows a key)."""
    keys = tuple(k.strip() for k in (raw or "").split(",") if k.strip())
    if keys:
        try:
            SecretBox(keys)
        except SecretKeyError as exc:
            raise ConfigError(f"AGENTFLOW_SECRET_KEYS: {exc}") from None
    return keys


def parse_schedule(raw: str) -> tuple[float, ...]:
    """``"0,5,300"`` -> (0.0, 5.0, 300.0): the delay before attempt 1, 2, 3 ..."""
    try:
        values = tuple(float(x) for x in raw.split(",") if x.strip())
    except ValueError as exc:
        raise ConfigError(
            f"AGENTFLOW_WEBHOOK_RETRY_SCHEDULE must be comma-separated seconds, not {raw!r}"
        ) from exc
    if not values or any(v < 0 for v in values):
        raise ConfigError("AGENTFLOW_WEBHOOK_RETRY_SCHEDULE needs at least one non-negative delay")
    return values


@dataclass(frozen=True)
class WebhookSettings:
    schedule: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE
    timeout_s: float = 10.0  # per attempt: connect + send + response
    allow_private: bool = False  # loopback/private/link-local destinations (tests, trusted networks)
    max_retry_after_s: float = 36000.0  # a Retry-After beyond this is capped
    lease_margin_s: float = 10.0  # an endpoint lease outlives an attempt by this much
    sweep_interval_s: float = 1.0  # how often the relay looks for due work nobody is delivering
    drain_batch: int = 200  # deliveries one drain message handles before yielding to other endpoints
    worker_threads: int = 8
    relay_poll_s: float = 0.1
    response_excerpt_chars: int = 500
    queue_name: str = "webhooks"
    secret_grace_s: float = 24 * 3600.0  # a rotated-out secret keeps signing this long

    @property
    def lease_s(self) -> float:
        return self.timeout_s + self.lease_margin_s


def _origin(raw: str) -> str:
    """``scheme://host[:port]`` as browsers send it in ``Origin`` (lower-case scheme and host)."""
    parts = urlsplit(raw)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if (
        parts.scheme.lower() not in ("http", "https") or not parts.hostname or parts.username is not None
        or parts.path or parts.query or parts.fragment or port == -1
    ):  # fmt: skip
        raise ConfigError(
            f"AGENTFLOW_CORS_ORIGINS entry {raw!r} is not an origin: scheme://host[:port], no path "
            "(e.g. https://app.example.com)"
        )
    scheme, host = parts.scheme.lower(), parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    default = 443 if scheme == "https" else 80  # browsers leave the default port out
    return f"{scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


def parse_cors_origins(raw: str | None) -> tuple[str, ...]:
    """Comma-separated origins, or ``*`` alone (any origin)."""
    items = [item.strip() for item in (raw or "").split(",") if item.strip()]
    if "*" in items:
        if len(items) > 1:
            raise ConfigError("AGENTFLOW_CORS_ORIGINS: `*` stands alone (any origin), not in a list")
        return ("*",)
    return tuple(dict.fromkeys(_origin(item) for item in items))


@dataclass(frozen=True)
class HttpSettings:
    """What the HTTP front door enforces on every request (services/api/http_guard.py, docs/security.md)."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES  # larger bodies answer 413
    cors_origins: tuple[str, ...] = ()  # () = no CORS; ("*",) = any origin
    cors_credentials: bool = False  # Access-Control-Allow-Credentials (never with "*")
    trust_forwarded_proto: bool = False  # X-Forwarded-Proto: https from the proxy in front means TLS (HSTS)
    access_log_sample: float = DEFAULT_ACCESS_LOG_SAMPLE  # of 2xx answers; every other answer is logged

    def __post_init__(self) -> None:
        if not 0.0 <= self.access_log_sample <= 1.0:
            raise ConfigError("AGENTFLOW_ACCESS_LOG_SAMPLE must be between 0 and 1")
        if self.max_body_bytes < 1024:
            raise ConfigError("AGENTFLOW_MAX_BODY_BYTES must be at least 1024")
        if "*" in self.cors_origins and self.cors_credentials:
            raise ConfigError(
                "AGENTFLOW_CORS_ORIGINS=* cannot be combined with AGENTFLOW_CORS_CREDENTIALS=1: browsers "
                "refuse credentials for a wildcard origin, and allowing any origin with credentials would "
                "let every web page act as the signed-in user; list the origins instead"
            )
        if self.cors_credentials and not self.cors_origins:
            raise ConfigError("AGENTFLOW_CORS_CREDENTIALS=1 needs AGENTFLOW_CORS_ORIGINS")


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path(".agentflow")
    host: str = "127.0.0.1"
    port: int = 8000
    metrics_port: int | None = None  # /metrics on its own port (docs/observability.md); None: the API's
    database_url: str | None = None  # an external Postgres; None = own cluster under data_dir
    clickhouse_dsn: str | None = None  # None = chdb under data_dir
    api_keys: dict[str, str] = field(default_factory=dict)  # key -> tenant (scopes read + write)
    admin_api_keys: frozenset[str] = frozenset()  # of api_keys: also admin
    operator_api_keys: frozenset[str] = frozenset()  # of api_keys: also admin and operator
    key_rotation_grace_s: float = 24 * 3600.0  # a rotated-out stored key stays valid this long
    # keys of the stored secrets, newest first; () = the data dir's key file (services/secrets.py)
    secret_keys: tuple[str, ...] = field(default=(), repr=False)
    reporting_currency: str = "USD"
    min_position_timeout_s: float = 5.0
    rate_limit_read_rpm: int = DEFAULT_READ_RPM  # per API key and sliding minute; 0 = no limit
    rate_limit_write_rpm: int = DEFAULT_WRITE_RPM  # commands and admin routes
    auth_failures_per_minute: int = DEFAULT_AUTH_FAILURES  # per client address; 0 = no throttling
    rate_limit_redis_url: str | None = None  # budgets shared through Redis; None = in process
    iceberg_enabled: bool = True
    iceberg_batch_rows: int = 5000
    iceberg_batch_age_s: float = 5.0
    lake_maintain_interval_s: float = 3600.0  # scheduled lake maintenance (services/lake_job.py); 0 = none
    lake_snapshot_max_age_s: float = 3600.0
    lake_retain_snapshots: int = 10
    lake_target_file_mb: int = 64
    workers_enabled: bool = True
    alerts_enabled: bool = True
    alert_sweep_s: float = 5.0
    alert_worker_threads: int = 2
    legacy_sources_enabled: bool = True
    sse_max_streams: int = DEFAULT_MAX_STREAMS
    slo_file: Path | None = None
    slo_overrides: dict[str, Any] = field(default_factory=dict)
    time_travel_max_events: int = DEFAULT_TIME_TRAVEL_MAX_EVENTS
    db_threads: int = DEFAULT_DB_THREADS
    log_level: str = "INFO"
    jvm_opts: tuple[str, ...] = ()
    pg_bin: Path | None = None
    # distributed deployment (docs/distributed.md)
    deployment: str = "embedded"  # "embedded" | "distributed"
    kafka_bootstrap: str | None = None  # None with --distributed = start our own stack
    topic_prefix: str = "agentflow"
    loader_group: str | None = None
    connect_url: str | None = None  # register the Debezium connector there at start (external stack)
    flink_rest_url: str | None = None  # the projection job's Flink REST API (health)
    redis_url: str | None = None  # the fleet's Redis broker (workers, alerts) instead of dramatiq-postgres
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    # legacy sources may name loopback/private database hosts (connectors/legacy/declaration.py)
    legacy_allow_private: bool = False

    @property
    def chdb_path(self) -> Path:
        return self.data_dir / "clickhouse"

    @property
    def secret_key_file(self) -> Path:
        return self.data_dir / KEY_FILE

    @property
    def resolved_clickhouse_dsn(self) -> str:
        return self.clickhouse_dsn or f"chdb://{self.chdb_path.resolve()}"

    def with_(self, **changes: Any) -> Settings:
        """A copy with ``changes`` (None values ignored: an unset command-line flag changes nothing)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def _webhooks_from_env(env: Mapping[str, str]) -> WebhookSettings:
    values: dict[str, Any] = {"allow_private": _flag(env.get("AGENTFLOW_WEBHOOK_ALLOW_PRIVATE"), False)}
    if raw := env.get("AGENTFLOW_WEBHOOK_RETRY_SCHEDULE"):
        values["schedule"] = parse_schedule(raw)
    for name, var in (
        ("timeout_s", "AGENTFLOW_WEBHOOK_TIMEOUT_S"),
        ("lease_margin_s", "AGENTFLOW_WEBHOOK_LEASE_MARGIN_S"),
        ("sweep_interval_s", "AGENTFLOW_WEBHOOK_SWEEP_S"),
        ("relay_poll_s", "AGENTFLOW_WEBHOOK_RELAY_POLL_S"),
    ):
        if (value := _number(env, var, float, 0.0)) is not None:
            values[name] = value
    if (threads := _number(env, "AGENTFLOW_WORKER_THREADS", int, 1)) is not None:
        values["worker_threads"] = threads
    return WebhookSettings(**values)


def _http_from_env(env: Mapping[str, str]) -> HttpSettings:
    sample = _number(env, "AGENTFLOW_ACCESS_LOG_SAMPLE", float, 0.0)
    return HttpSettings(
        max_body_bytes=_number(env, "AGENTFLOW_MAX_BODY_BYTES", int, 1024) or DEFAULT_MAX_BODY_BYTES,
        cors_origins=parse_cors_origins(env.get("AGENTFLOW_CORS_ORIGINS")),
        cors_credentials=_flag(env.get("AGENTFLOW_CORS_CREDENTIALS"), False),
        trust_forwarded_proto=_flag(env.get("AGENTFLOW_TRUST_FORWARDED_PROTO"), False),
        access_log_sample=DEFAULT_ACCESS_LOG_SAMPLE if sample is None else sample,
    )


def settings_from_env(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """The server's settings; ``overrides`` (command-line flags) win over the environment."""
    env = os.environ if env is None else env
    api_keys = parse_api_keys(env.get("AGENTFLOW_API_KEYS"))
    overrides_raw = env.get("AGENTFLOW_SLO_OVERRIDES")
    try:
        slo_overrides = json.loads(overrides_raw) if overrides_raw else {}
    except ValueError as exc:
        raise ConfigError(f"AGENTFLOW_SLO_OVERRIDES is not JSON: {exc}") from exc
    both_rpm = _number(env, "AGENTFLOW_RATE_LIMIT_RPM", int, 0)
    values: dict[str, Any] = {
        "data_dir": Path(env.get("AGENTFLOW_DATA_DIR") or ".agentflow"),
        "host": env.get("AGENTFLOW_HOST") or "127.0.0.1",
        "port": _number(env, "AGENTFLOW_PORT", int, 1) or 8000,
        "metrics_port": _number(env, "AGENTFLOW_METRICS_PORT", int, 1),
        "database_url": env.get("AGENTFLOW_DATABASE_URL") or None,
        "clickhouse_dsn": env.get("AGENTFLOW_CLICKHOUSE_DSN") or None,
        "api_keys": api_keys,
        "admin_api_keys": _key_list(env, "AGENTFLOW_ADMIN_API_KEYS", api_keys),
        "operator_api_keys": _key_list(env, "AGENTFLOW_OPERATOR_API_KEYS", api_keys),
        "key_rotation_grace_s": _default(_number(env, "AGENTFLOW_KEY_ROTATION_GRACE_S", float, 0.0), 86400.0),
        "secret_keys": parse_secret_keys(env.get("AGENTFLOW_SECRET_KEYS")),
        "reporting_currency": (env.get("AGENTFLOW_REPORTING_CURRENCY") or "USD").upper(),
        "rate_limit_read_rpm": _default(_number(env, "AGENTFLOW_RATE_LIMIT_READ_RPM", int, 0),
                                        _default(both_rpm, DEFAULT_READ_RPM)),
        "rate_limit_write_rpm": _default(_number(env, "AGENTFLOW_RATE_LIMIT_WRITE_RPM", int, 0),
                                         _default(both_rpm, DEFAULT_WRITE_RPM)),
        "auth_failures_per_minute": _default(
            _number(env, "AGENTFLOW_AUTH_FAILURES_PER_MINUTE", int, 0), DEFAULT_AUTH_FAILURES
        ),
        "rate_limit_redis_url": env.get("AGENTFLOW_RATE_LIMIT_REDIS_URL") or env.get("AGENTFLOW_REDIS_URL")
        or None,
        "iceberg_enabled": _flag(env.get("AGENTFLOW_ICEBERG"), True),
        "lake_maintain_interval_s": _default(_number(env, "AGENTFLOW_LAKE_MAINTAIN_INTERVAL_S", float, 0.0),
                                             3600.0),
        "lake_snapshot_max_age_s": _default(_number(env, "AGENTFLOW_LAKE_SNAPSHOT_MAX_AGE_S", float, 0.0),
                                            3600.0),
        "lake_retain_snapshots": _number(env, "AGENTFLOW_LAKE_RETAIN_SNAPSHOTS", int, 1) or 10,
        "lake_target_file_mb": _number(env, "AGENTFLOW_LAKE_TARGET_FILE_MB", int, 1) or 64,
        "workers_enabled": _flag(env.get("AGENTFLOW_WORKERS"), True),
        "alerts_enabled": _flag(env.get("AGENTFLOW_ALERTS"), True),
        "alert_sweep_s": _number(env, "AGENTFLOW_ALERT_SWEEP_S", float, 0.01) or 5.0,
        "alert_worker_threads": _number(env, "AGENTFLOW_ALERT_WORKER_THREADS", int, 1) or 2,
        "legacy_sources_enabled": _flag(env.get("AGENTFLOW_LEGACY_SOURCES"), True),
        "legacy_allow_private": _flag(env.get("AGENTFLOW_LEGACY_ALLOW_PRIVATE"), False),
        "sse_max_streams": _number(env, "AGENTFLOW_SSE_MAX_STREAMS", int, 1) or DEFAULT_MAX_STREAMS,
        "slo_file": Path(env["AGENTFLOW_SLO_FILE"]) if env.get("AGENTFLOW_SLO_FILE") else None,
        "slo_overrides": slo_overrides,
        "time_travel_max_events": _number(env, "AGENTFLOW_TIME_TRAVEL_MAX_EVENTS", int, 1)
        or DEFAULT_TIME_TRAVEL_MAX_EVENTS,
        "db_threads": _number(env, "AGENTFLOW_DB_THREADS", int, 1) or DEFAULT_DB_THREADS,
        "log_level": (env.get("AGENTFLOW_LOG_LEVEL") or "INFO").upper(),
        "jvm_opts": tuple((env.get("AGENTFLOW_JVM_OPTS") or "").split()),
        "pg_bin": Path(env["AGENTFLOW_PG_BIN"]) if env.get("AGENTFLOW_PG_BIN") else None,
        "kafka_bootstrap": env.get("AGENTFLOW_KAFKA_BOOTSTRAP_SERVERS") or None,
        "topic_prefix": env.get("AGENTFLOW_KAFKA_TOPIC_PREFIX") or "agentflow",
        "loader_group": env.get("AGENTFLOW_LOADER_GROUP") or None,
        "connect_url": env.get("AGENTFLOW_CONNECT_URL") or None,
        "flink_rest_url": env.get("AGENTFLOW_FLINK_REST_URL") or None,
        "redis_url": env.get("AGENTFLOW_REDIS_URL") or None,
        "webhooks": _webhooks_from_env(env),
        "http": _http_from_env(env),
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)


@dataclass(frozen=True)
class ClientSettings:
    """Where the admin CLIs (``agentflow sources|projections``) send their requests."""

    url: str
    api_key: str | None


def client_config_file(env: Mapping[str, str], path: Path | None = None) -> dict[str, Any]:
    """The CLIs' config file (``path``, else ``AGENTFLOW_CONFIG``, else ``~/.config/agentflow/config.toml``
    under ``XDG_CONFIG_HOME``): ``url`` and ``api_key``. A missing default file is no error."""
    explicit = path or (Path(env["AGENTFLOW_CONFIG"]) if env.get("AGENTFLOW_CONFIG") else None)
    home = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else Path.home() / ".config"
    file = explicit or home / "agentflow" / "config.toml"
    try:
        values = tomllib.loads(file.read_text())
    except FileNotFoundError:
        if explicit:
            raise ValueError(f"config file {file} not found") from None
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"config file {file}: {exc}") from exc
    unknown = set(values) - {"url", "api_key"}
    if unknown or not all(isinstance(v, str) for v in values.values()):
        raise ValueError(f"config file {file}: only string keys url and api_key (got {sorted(values)})")
    return values


def client_settings_from_env(
    url: str | None = None, api_key: str | None = None, data_dir: Path | None = None,
    env: Mapping[str, str] | None = None, config_file: Path | None = None,
) -> ClientSettings:
    """Flags first, then ``AGENTFLOW_URL``/``AGENTFLOW_API_KEY``, then the config file
    (:func:`client_config_file`), then the server's own settings: its first operator key, else its
    first admin key, else its first key, else the development key under its data dir."""
    env = os.environ if env is None else env
    server = settings_from_env(env)
    file = client_config_file(env, config_file)
    target = (url or env.get("AGENTFLOW_URL") or file.get("url") or f"http://{server.host}:{server.port}")
    target = target.rstrip("/")
    configured = [k for k in server.api_keys if k in server.operator_api_keys]
    configured += [k for k in server.api_keys if k in server.admin_api_keys] + list(server.api_keys)
    key = api_key or env.get("AGENTFLOW_API_KEY") or file.get("api_key") or next(iter(configured), None)
    if key is None:
        try:
            key = ((data_dir or server.data_dir) / "dev-api-key").read_text().strip() or None
        except OSError:
            key = None
    return ClientSettings(target, key)


def configuration_table() -> str:
    """docs/configuration.md."""
    rows = "\n".join(f"| `{name}` | {what} |" for name, what in ENV_VARS.items())
    return (
        "# Configuration\n\nEvery setting is an environment variable, read once at start by "
        "`services/config.py`\n(command-line flags of `agentflow up` win over them).\n\n"
        f"| variable | meaning |\n|---|---|\n{rows}\n"
    )

"""Runtime settings, read once from the environment and the command line."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path(".agentflow")
    host: str = "127.0.0.1"
    port: int = 8000
    database_url: str | None = None  # an external Postgres; None = own cluster under data_dir
    clickhouse_dsn: str | None = None  # None = chdb under data_dir
    api_keys: dict[str, str] = field(default_factory=dict)  # key -> tenant
    reporting_currency: str = "USD"
    min_position_timeout_s: float = 5.0
    rate_limit_rpm: int | None = None  # per API key; None = no limit
    iceberg_enabled: bool = True
    iceberg_batch_rows: int = 5000
    iceberg_batch_age_s: float = 5.0
    # distributed deployment (docs/distributed.md)
    deployment: str = "embedded"  # "embedded" | "distributed"
    kafka_bootstrap: str | None = None  # None with --distributed = start our own stack
    topic_prefix: str = "agentflow"
    loader_group: str | None = None
    connect_url: str | None = None  # register the Debezium connector there at start (external stack)

    @property
    def chdb_path(self) -> Path:
        return self.data_dir / "clickhouse"

    @property
    def resolved_clickhouse_dsn(self) -> str:
        return self.clickhouse_dsn or f"chdb://{self.chdb_path.resolve()}"


def parse_api_keys(raw: str | None) -> dict[str, str]:
    """``key:tenant`` pairs, comma-separated."""
    keys: dict[str, str] = {}
    for item in (raw or "").split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, tenant = item.partition(":")
        if not sep or not key.strip() or not tenant.strip():
            raise ValueError(f"AGENTFLOW_API_KEYS entry {item!r} is not key:tenant")
        keys[key.strip()] = tenant.strip()
    return keys


def _positive_int(raw: str | None, name: str) -> int | None:
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a whole number, not {raw!r}") from exc
    if value <= 0:
        raise ValueError(f"{name} must be positive")
    return value


def settings_from_env(**overrides: object) -> Settings:
    env = os.environ
    values: dict[str, object] = {
        "data_dir": Path(env.get("AGENTFLOW_DATA_DIR", ".agentflow")),
        "database_url": env.get("AGENTFLOW_DATABASE_URL") or None,
        "clickhouse_dsn": env.get("AGENTFLOW_CLICKHOUSE_DSN") or None,
        "api_keys": parse_api_keys(env.get("AGENTFLOW_API_KEYS")),
        "reporting_currency": env.get("AGENTFLOW_REPORTING_CURRENCY", "USD"),
        "iceberg_enabled": env.get("AGENTFLOW_ICEBERG", "1") not in ("0", "false", "no"),
        "kafka_bootstrap": env.get("AGENTFLOW_KAFKA_BOOTSTRAP_SERVERS") or None,
        "topic_prefix": env.get("AGENTFLOW_KAFKA_TOPIC_PREFIX") or "agentflow",
        "loader_group": env.get("AGENTFLOW_LOADER_GROUP") or None,
        "connect_url": env.get("AGENTFLOW_CONNECT_URL") or None,
        "rate_limit_rpm": _positive_int(env.get("AGENTFLOW_RATE_LIMIT_RPM"), "AGENTFLOW_RATE_LIMIT_RPM"),
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)  # type: ignore[arg-type]

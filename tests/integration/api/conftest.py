"""The HTTP app in process: Litestar's test client over the app the composition root builds, on a real
Postgres (a database of the module's own in the session's cluster) and chdb.

Fixtures: ``app_container`` (module: the built container) and ``client`` (module: a test client of its
app, runtime started with it). Requests carry ``headers=A`` or ``headers=B`` (tenant A's or B's key:
scopes read and write, as every AGENTFLOW_API_KEYS key), ``A_ADMIN``/``B_ADMIN`` (also admin) or ``OPS``
(an operator key of a tenant of its own).
For what is about processes (the front door, restart, kill) the subprocess tests in tests/e2e stay.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chdb_store import chdb_dsn
from litestar.testing import TestClient
from sqlalchemy import make_url

from connectors.database import make_engine
from migrations import run_migrations
from services.api.app import create_app
from services.bootstrap import Container, build
from services.config import Settings

KEY_A, KEY_B = "in-process-key-a", "in-process-key-b"
KEY_ADMIN_A, KEY_ADMIN_B, KEY_OPERATOR = "in-process-admin-a", "in-process-admin-b", "in-process-operator"
KEYS = {
    KEY_A: "tenant-a", KEY_B: "tenant-b", KEY_ADMIN_A: "tenant-a", KEY_ADMIN_B: "tenant-b",
    KEY_OPERATOR: "operators",
}  # fmt: skip
ADMIN_KEYS = frozenset({KEY_ADMIN_A, KEY_ADMIN_B})
OPERATOR_KEYS = frozenset({KEY_OPERATOR})
A = {"X-API-Key": KEY_A}
B = {"X-API-Key": KEY_B}
A_ADMIN = {"X-API-Key": KEY_ADMIN_A}
B_ADMIN = {"X-API-Key": KEY_ADMIN_B}
OPS = {"X-API-Key": KEY_OPERATOR}


def in_process_settings(data_dir: Path, **changes: Any) -> Settings:
    """Settings of an in-process app: no lake, no worker fleet, no legacy captures unless asked."""
    defaults: dict[str, Any] = {
        "data_dir": data_dir, "clickhouse_dsn": chdb_dsn(), "iceberg_enabled": False,
        "workers_enabled": False, "legacy_sources_enabled": False, "alerts_enabled": False,
        "admin_api_keys": ADMIN_KEYS, "operator_api_keys": OPERATOR_KEYS,
        # the key probes send hundreds of refused keys from one address (test_rate_limit.py throttles them)
        "auth_failures_per_minute": 0,
    }
    return Settings(**{**defaults, **changes})


@pytest.fixture(scope="module")
def database(pg_cluster: Any) -> Iterator[str]:
    """A fresh, migrated database of this module's own."""
    name = f"api_{uuid.uuid4().hex[:10]}"
    admin = make_engine(pg_cluster.url, pool_size=1, max_overflow=0)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    url = make_url(pg_cluster.url).set(database=name).render_as_string(hide_password=False)
    try:
        run_migrations(url)
        yield url
    finally:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
        admin.dispose()


@pytest.fixture(scope="module")
def app_container(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    container = build(in_process_settings(tmp_path_factory.mktemp("api")), database, KEYS)
    container.clickhouse.drop_all()  # chdb is one path per test process: start from empty tables
    container.clickhouse.ensure_schema()
    try:
        yield container
    finally:
        container.close()


@pytest.fixture(scope="module")
def client(app_container: Container) -> Iterator[TestClient[Any]]:
    with TestClient(create_app(app_container), timeout=60) as c:
        yield c

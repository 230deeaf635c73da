"""Shared integration fixtures: a real Postgres cluster per test session, a clean database per test.

Fixtures: ``pg_cluster`` (session; ``.url``), ``pg_url`` (clean database URL), ``engine`` (SQLAlchemy
engine on the clean database). Set AGENTFLOW_TEST_PG_URL to use an existing server instead (its
database is migrated and truncated between tests).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from connectors.database import make_engine
from connectors.postgres_cluster import PostgresCluster
from migrations import run_migrations


@dataclass
class ExternalCluster:
    url: str

    def is_running(self) -> bool:
        return True


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster | ExternalCluster]:
    external = os.environ.get("AGENTFLOW_TEST_PG_URL")
    if external:
        run_migrations(external)
        yield ExternalCluster(external)
        return
    root = Path(tempfile.mkdtemp(prefix="agentflow-pg-"))
    # tests are many short transactions on a throwaway cluster: keep it small
    cluster = PostgresCluster(root / "pg", settings={"shared_buffers": "128MB"})
    try:
        cluster.start()
        run_migrations(cluster.url)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def reset_database(url: str) -> None:
    """Empty every table the tests write (schemas ``public`` except alembic_version, and ``dramatiq``,
    the embedded worker queue) and restart every sequence."""
    eng = make_engine(url, pool_size=1, max_overflow=0)
    try:
        with eng.begin() as conn:
            conn.exec_driver_sql("SET LOCAL lock_timeout = '20s'")
            tables = [
                r[0]
                for r in conn.exec_driver_sql(
                    "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables "
                    "WHERE schemaname IN ('public', 'dramatiq') AND tablename <> 'alembic_version'"
                )
            ]
            if tables:
                conn.exec_driver_sql(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
            for (seq,) in conn.exec_driver_sql(
                "SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename) FROM pg_sequences "
                "WHERE schemaname IN ('public', 'dramatiq')"
            ).all():
                conn.exec_driver_sql(f"ALTER SEQUENCE {seq} RESTART")
    finally:
        eng.dispose()


@pytest.fixture()
def pg_url(pg_cluster: PostgresCluster | ExternalCluster) -> str:
    reset_database(pg_cluster.url)
    return pg_cluster.url


@pytest.fixture()
def engine(pg_url: str) -> Iterator[Engine]:
    eng = make_engine(pg_url, pool_size=12, max_overflow=8)
    try:
        yield eng
    finally:
        eng.dispose()

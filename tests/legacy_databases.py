"""Real legacy source databases for CDC tests and benchmarks: a second Postgres cluster and a MariaDB
server, each with the shop schema (``legacy_app``) and a capture user Debezium can log in as.

tests/conftest.py registers the fixtures ``legacy_postgres`` and ``legacy_mariadb`` for the whole
session (one server each). Both fixtures are session-scoped, start their server in a ``server_dir`` on a
free 127.0.0.1 port and stop it at the end of the session. The tables exist and are empty at first;
call ``reset()`` for a clean slate (it also drops ``agentflow_*`` slots/publications on Postgres).

``server_dir`` / the ``server_tmp_path`` fixture: a directory for a server that runs as another OS
user (``mysql``, or ``postgres`` when the tests run as root), outside pytest's tmp root. Every pytest
session that starts resets ``/tmp/pytest-of-<user>`` to mode 0700 (pytest's privacy fix-up), which cuts
a server starting at that moment in another session off its files ("Permission denied").
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import psycopg
import pymysql
import pytest
from legacy_app import LegacyShopWriter, create_schema, drop_schema, read_tables
from mariadb_server import MariaDBServer

from connectors.postgres_cluster import PostgresCluster
from connectors.replication_slots import drop_slot_and_publication

DATABASE = "shop"
CAPTURE_USER = "debezium"
CAPTURE_PASSWORD = "debezium-secret"
SLOT_PREFIX = "agentflow_"
SHOP_TRANSLATORS = ("products", "inventory", "orders", "payments")


@dataclass
class LegacyDatabase:
    """Where a legacy shop database is and how to reach it.

    ``user``/``password`` are the capture user's (replication rights; what Debezium logs in with);
    ``admin_connect()`` gives a full-rights DB-API connection for the application writer.
    ``schema`` is the schema name Debezium reports in ``source.schema``/``source.db`` terms:
    ``public`` for Postgres, ``shop`` for MariaDB.
    """

    kind: Literal["postgres", "mariadb"]
    host: str
    port: int
    database: str
    user: str
    password: str
    schema: str
    admin_user: str
    admin_password: str = ""
    server: PostgresCluster | MariaDBServer | None = field(default=None, repr=False, compare=False)

    def admin_connect(self) -> Any:
        """A fresh full-rights connection to the shop database, autocommit off."""
        return self._connect(self.admin_user, self.admin_password)

    def capture_connect(self) -> Any:
        """A fresh connection as the capture user (autocommit off)."""
        return self._connect(self.user, self.password)

    def _connect(self, user: str, password: str) -> Any:
        if self.kind == "postgres":
            return psycopg.connect(host=self.host, port=self.port, dbname=self.database, user=user,
                                   password=password or None, autocommit=False, connect_timeout=10)
        return pymysql.connect(host=self.host, port=self.port, database=self.database, user=user,
                               password=password, autocommit=False, connect_timeout=10, charset="utf8mb4")

    def declaration(
        self, name: str, tenant: str, translators: tuple[str, ...] = SHOP_TRANSLATORS, **extra: Any
    ) -> dict[str, Any]:
        """A source declaration (connectors/legacy/declaration.py) capturing these shop tables."""
        return {
            "name": name, "kind": self.kind, "tenant": tenant,
            "connection": {"host": self.host, "port": self.port, "database": self.database, "user": self.user,
                           "password": self.password},
            "tables": [{"table": f"{self.schema}.{t}", "translator": t} for t in translators],
            **extra,
        }  # fmt: skip

    def writer(self, clock: Any = None) -> LegacyShopWriter:
        """A ``LegacyShopWriter`` on its own admin connection (``writer.close()`` closes it)."""
        return LegacyShopWriter(self.admin_connect(), self.kind, clock=clock)

    def tables(self) -> dict[str, dict[int, dict[str, Any]]]:
        """The shop tables' current contents (``legacy_app.read_tables``)."""
        conn = self.admin_connect()
        try:
            return read_tables(conn, self.kind)
        finally:
            conn.close()

    def connection_properties(self) -> dict[str, str]:
        """The Debezium connection keys for this source (hostname, port, user, password, database)."""
        props = {"database.hostname": self.host, "database.port": str(self.port), "database.user": self.user,
                 "database.password": self.password}
        if self.kind == "postgres":
            props["database.dbname"] = self.database
        else:
            props["database.include.list"] = self.database
        return props

    def reset(self, slot_prefix: str = SLOT_PREFIX) -> None:
        """Drop and recreate the shop tables; on Postgres also drop replication slots and publications
        whose names start with ``slot_prefix`` (terminating a walsender still using a slot)."""
        conn = self.admin_connect()
        try:
            if self.kind == "postgres":
                _drop_pg_replication(conn, slot_prefix)
                with conn.cursor() as cur:
                    cur.execute("SET lock_timeout = '20s'")
            else:
                with conn.cursor() as cur:
                    cur.execute("SET SESSION lock_wait_timeout = 20")
            drop_schema(conn, self.kind)
            create_schema(conn, self.kind)
        finally:
            conn.close()


def _drop_pg_replication(conn: Any, prefix: str) -> None:
    pattern = prefix.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%") + "%"
    conn.autocommit = True
    try:
        slots = conn.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE %s", (pattern,)
        ).fetchall()
        for (slot,) in slots:  # a walsender of a test still holding one is ended at once
            drop_slot_and_publication(conn, slot, None, timeout=0)
        for (pub,) in conn.execute("SELECT pubname FROM pg_publication WHERE pubname LIKE %s", (pattern,)):
            conn.execute(f'DROP PUBLICATION IF EXISTS "{pub}"')
    finally:
        conn.autocommit = False


def start_legacy_postgres(data_dir: Any) -> tuple[PostgresCluster, LegacyDatabase]:
    """Start a legacy Postgres cluster (wal_level=logical) with database ``shop``, the schema and a
    ``debezium`` role (LOGIN REPLICATION SUPERUSER: Debezium's publication autocreate works in any mode).
    pg_hba is initdb's ``trust`` for 127.0.0.1, so the password is accepted but not checked."""
    cluster = PostgresCluster(data_dir, settings={"shared_buffers": "64MB", "max_connections": "100"})
    try:
        cluster.start()
        assert cluster.port is not None
        with psycopg.connect(host="127.0.0.1", port=cluster.port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone():
                conn.execute(f"CREATE DATABASE {DATABASE}")
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (CAPTURE_USER,)).fetchone():
                conn.execute(f"CREATE ROLE {CAPTURE_USER} LOGIN REPLICATION SUPERUSER")
            conn.execute(f"ALTER ROLE {CAPTURE_USER} PASSWORD '{CAPTURE_PASSWORD}'")
        db = LegacyDatabase(kind="postgres", host="127.0.0.1", port=cluster.port, database=DATABASE,
                            user=CAPTURE_USER, password=CAPTURE_PASSWORD, schema="public",
                            admin_user="postgres", server=cluster)
        conn = db.admin_connect()
        try:
            create_schema(conn, "postgres")
            with conn.cursor() as cur:
                cur.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {CAPTURE_USER}")
                cur.execute(
                    f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {CAPTURE_USER}"
                )
            conn.commit()
        finally:
            conn.close()
    except BaseException:
        cluster.stop()
        raise
    return cluster, db


def start_legacy_mariadb(data_dir: Any, die_with_parent: bool = True) -> tuple[MariaDBServer, LegacyDatabase]:
    """Start a MariaDB server (ROW/FULL binlog) with database ``shop``, the schema and a ``debezium``
    user holding the CDC grants (``mariadb_server.CDC_GRANTS``)."""
    server = MariaDBServer(data_dir, die_with_parent=die_with_parent)
    try:
        server.start()
        assert server.port is not None
        server.create_database(DATABASE)
        server.create_user(CAPTURE_USER, CAPTURE_PASSWORD)
        db = LegacyDatabase(kind="mariadb", host=server.host, port=server.port, database=DATABASE,
                            user=CAPTURE_USER, password=CAPTURE_PASSWORD, schema=DATABASE, admin_user="root",
                            server=server)
        conn = db.admin_connect()
        try:
            create_schema(conn, "mariadb")
        finally:
            conn.close()
    except BaseException:
        server.stop()
        raise
    return server, db


def _missing(what: str, e: Exception) -> str:
    return f"cannot start the legacy {what} ({e}); run `make system-deps` to install the servers"


@contextlib.contextmanager
def server_dir(prefix: str) -> Iterator[Path]:
    """A fresh directory outside pytest's tmp root (see the module docstring), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture()
def server_tmp_path() -> Iterator[Path]:
    """Like ``tmp_path``, for the data of a server that runs as another OS user."""
    with server_dir("agentflow-test-server-") as path:
        yield path


@pytest.fixture(scope="session")
def legacy_postgres() -> Iterator[LegacyDatabase]:
    """A legacy shop on its own Postgres cluster (database ``shop``, schema ``public``)."""
    with server_dir("agentflow-legacy-pg-") as root:
        try:
            cluster, db = start_legacy_postgres(root / "pg")
        except FileNotFoundError as e:
            pytest.fail(_missing("Postgres", e), pytrace=False)
        try:
            yield db
        finally:
            cluster.stop()


@pytest.fixture(scope="session")
def legacy_mariadb() -> Iterator[LegacyDatabase]:
    """A legacy shop on its own MariaDB server (database ``shop``)."""
    with server_dir("agentflow-legacy-mariadb-") as root:
        try:
            server, db = start_legacy_mariadb(root / "mariadb")
        except FileNotFoundError as e:
            pytest.fail(_missing("MariaDB", e), pytrace=False)
        try:
            yield db
        finally:
            server.stop()

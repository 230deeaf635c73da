"""The legacy CDC sources are real and CDC-ready: a Postgres cluster with wal_level=logical and a
MariaDB server with a ROW/FULL binlog; the capture user has its rights; the legacy writer's model
matches what the tables say, in both dialects."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg
import pymysql
import pytest
from legacy_app import ORDER_STATUSES, TABLES, StepClock
from legacy_databases import LegacyDatabase
from mariadb_server import MariaDBServer

pytestmark = pytest.mark.integration


@pytest.fixture(params=["postgres", "mariadb"])
def legacy(request: pytest.FixtureRequest) -> LegacyDatabase:
    """Each legacy database in turn, reset to empty tables."""
    db: LegacyDatabase = request.getfixturevalue(f"legacy_{request.param}")
    db.reset()
    return db


def _mariadbd_pids(datadir: Path) -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"--datadir={datadir}"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def test_mariadb_binlog_is_cdc_ready(legacy_mariadb: LegacyDatabase) -> None:
    server = legacy_mariadb.server
    assert isinstance(server, MariaDBServer) and server.is_running()
    v = server.variables("log_bin", "binlog_format", "binlog_row_image", "bind_address", "server_id",
                         "time_zone")
    assert v == {"log_bin": "ON", "binlog_format": "ROW", "binlog_row_image": "FULL",
                 "bind_address": "127.0.0.1", "server_id": "1", "time_zone": "+00:00"}


def test_postgres_is_logical(legacy_postgres: LegacyDatabase) -> None:
    legacy_postgres.reset()
    with legacy_postgres.admin_connect() as conn:
        assert conn.execute("SHOW wal_level").fetchone() == ("logical",)
        idents = dict(conn.execute(
            "SELECT relname, relreplident FROM pg_class WHERE relnamespace = 'public'::regnamespace "
            "AND relkind = 'r'"
        ).fetchall())
        assert idents == dict.fromkeys(TABLES, "f")  # REPLICA IDENTITY FULL everywhere
        role = conn.execute("SELECT rolcanlogin, rolreplication FROM pg_roles WHERE rolname = %s",
                            (legacy_postgres.user,)).fetchone()
        assert role == (True, True)


def test_postgres_capture_user_can_replicate_and_reset_cleans_up(
    legacy_postgres: LegacyDatabase,
) -> None:
    db = legacy_postgres
    db.reset()
    with psycopg.connect(host=db.host, port=db.port, dbname=db.database, user=db.user, password=db.password,
                         autocommit=True) as conn:
        conn.execute("CREATE PUBLICATION agentflow_probe FOR TABLE orders, payments")
        conn.execute("SELECT pg_create_logical_replication_slot('agentflow_probe', 'pgoutput')")
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (0,)
    # a replication-protocol connection (what Debezium opens) is accepted for the capture user
    with psycopg.connect(host=db.host, port=db.port, dbname=db.database, user=db.user, password=db.password,
                         replication="database", autocommit=True) as repl:
        assert repl.info.status == psycopg.pq.ConnStatus.OK
    db.reset()
    with db.admin_connect() as conn:
        slots = conn.execute("SELECT slot_name FROM pg_replication_slots").fetchall()
        pubs = conn.execute("SELECT pubname FROM pg_publication").fetchall()
    assert slots == [] and pubs == []


def test_mariadb_capture_user_reads_the_binlog(legacy_mariadb: LegacyDatabase) -> None:
    db = legacy_mariadb
    db.reset()
    w = db.writer()
    try:
        w.add_product(1, 1000)
        w.place_order(10, 5, 1, 2)
        w.set_status(10, "confirmed")
        w.delete_order(10)
    finally:
        w.close()
    conn = db.capture_connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW GRANTS")
            grants = " ".join(r[0] for r in cur.fetchall())
            for g in ("SELECT", "RELOAD", "SHOW DATABASES", "LOCK TABLES", "REPLICATION SLAVE",
                      "BINLOG MONITOR"):
                assert g in grants
            cur.execute("SHOW MASTER STATUS")
            (binlog, _pos, *_rest), = cur.fetchall()
            cur.execute(f"SHOW BINLOG EVENTS IN '{binlog}'")
            kinds = {r[2] for r in cur.fetchall()}
            cur.execute("SELECT count(*) FROM shop.products")
            assert cur.fetchone() == (1,)
    finally:
        conn.close()
    # row-based events for every change, not statements
    assert {"Write_rows_v1", "Update_rows_v1", "Delete_rows_v1"} <= kinds
    assert "Gtid" in kinds


def test_run_app_tables_equal_the_model(legacy: LegacyDatabase) -> None:
    w = legacy.writer(clock=StepClock())
    try:
        w.run_app(300, seed=7)
        want = w.expected()
    finally:
        w.close()
    assert legacy.tables() == want.tables()
    ops = {op for op, _ in w.history}
    assert {"add_product", "place_order", "pay", "settle_payment", "set_status", "touch_order", "restock",
            "change_price", "delete_payment"} <= ops
    assert set(want.orders_by_status) <= set(ORDER_STATUSES) and len(want.orders_by_status) == 5
    assert sum(want.order_count.values()) == len(want.orders) - want.orders_by_status.get("cancelled", 0)
    assert set(want.revenue_cents) == {"EUR", "USD"}
    assert want.stock == {pid: r["quantity"] for pid, r in want.inventory.items()}
    assert all(q >= 0 for q in want.stock.values())
    assert want.counts["orders"] == len(want.orders) > 250  # a few cancelled orders were purged


def test_same_seed_same_tables_in_both_dialects(
    legacy_postgres: LegacyDatabase, legacy_mariadb: LegacyDatabase,
) -> None:
    results = []
    for db in (legacy_postgres, legacy_mariadb):
        db.reset()
        w = db.writer(clock=StepClock())
        try:
            w.run_app(120, seed=42)
        finally:
            w.close()
        results.append((db.tables(), w.history))
    assert results[0] == results[1]


def test_burst_skips_steps_and_touches(legacy: LegacyDatabase) -> None:
    w = legacy.writer()
    try:
        w.add_product(1, 500, quantity=10)
        for oid in range(1, 9):
            w.place_order(oid, 100 + oid, 1, 1)
        for oid in (5, 6, 7, 8):
            w.pay(100 + oid, oid, confirm=True)
        before = len(w.history)
        n = w.burst(range(1, 9), seed=3)
        burst_ops = w.history[before:]
        want = w.expected()
    finally:
        w.close()
    assert n >= 12
    assert legacy.tables() == want.tables()
    # pending orders were paid and shipped without ever being confirmed; confirmed ones went straight on
    for oid in range(1, 5):
        assert want.orders[oid]["status"] in ("shipped", "delivered")
    for oid in range(5, 9):
        assert want.orders[oid]["status"] == "delivered"
    touched = [key for op, key in burst_ops if op in ("touch_order", "set_status")]
    assert touched != sorted(touched)  # interleaved across orders, not order by order


def test_failed_transaction_leaves_model_untouched(legacy: LegacyDatabase) -> None:
    w = legacy.writer()
    other = legacy.admin_connect()
    try:
        w.add_product(1, 700, currency="USD", quantity=3)
        with other.cursor() as cur:  # another app instance already used order id 1
            cur.execute("INSERT INTO orders (id, customer_id, product_id, quantity, unit_price_cents, "
                        "currency, status) VALUES (1, 1, 1, 1, 700, 'USD', 'pending')")
        other.commit()
        with pytest.raises((psycopg.errors.UniqueViolation, pymysql.err.IntegrityError)):
            w.place_order(1, 1, 1, 1)
        assert 1 not in w.orders and 1 not in w.customers  # the guest customer insert rolled back too
        w.place_order(2, 1, 1, 2)  # the connection is usable afterwards
        assert w.restock(1, -3) == 0
        with pytest.raises(ValueError):
            w.restock(1, -1)
    finally:
        w.close()
        other.close()
    tables = legacy.tables()
    assert set(tables["orders"]) == {1, 2} and set(tables["customers"]) == {1}
    assert tables["inventory"][1]["quantity"] == 0


def test_mariadb_server_lifecycle(server_tmp_path: Path) -> None:
    data = server_tmp_path / "m"
    with MariaDBServer(data, die_with_parent=True) as server:
        assert server.is_running() and server.port is not None
        server.create_database("probe")
        with server.connect("probe", autocommit=True) as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE t (id INT PRIMARY KEY)")
            cur.execute("INSERT INTO t VALUES (1)")
        # a second owner adopts the running server instead of starting another
        assert MariaDBServer(data).start() == server.url
    assert not server.is_running() and _mariadbd_pids(data / "data") == []
    # restart keeps the data
    with MariaDBServer(data) as again, again.connect("probe") as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM t")
        assert cur.fetchall() == ((1,),)
    assert _mariadbd_pids(data / "data") == []


def test_mariadb_start_failure_quotes_the_log(server_tmp_path: Path) -> None:
    server = MariaDBServer(server_tmp_path / "bad", settings={"no-such-option": "1"})
    try:
        with pytest.raises(RuntimeError, match="no-such-option"):
            server.start(timeout=60)
        assert not server.is_running() and _mariadbd_pids(server_tmp_path / "bad" / "data") == []
    finally:
        server.stop()  # only when the check above failed is there anything to stop

"""The embedded Debezium engine (connectors/legacy/embedded_capture.py) captures a real legacy Postgres and
a real MariaDB: snapshot of existing rows (op r), then c/u/d with before/after images and the source
position; a restart resumes from the stored offsets (no re-snapshot, no gap, no duplicate); a handler
that raises gets the same records again; an unreachable database is retried, never raised.

Every test gets its own capture of a freshly reset database (fixture ``env``, parametrized by ``kind``):
no test depends on another's rows, offsets or order."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from legacy_databases import LegacyDatabase
from waiting import eventually

from connectors.legacy.debezium_config import drop_slot_and_publication, publication_name, slot_name
from connectors.legacy.declaration import SourceSpec, parse_source
from connectors.legacy.embedded_capture import CdcMessage, EmbeddedCapture
from connectors.legacy.jvm import EmbeddedJvm

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PREFIX = "legacy"
KINDS = ("postgres", "mariadb")
CAPTURE_TIMEOUT = 120.0  # a bound on a hang on a loaded machine, not a latency figure
JVM = EmbeddedJvm()  # the JVM of this test process (JPype: one per process), started by the first capture


class Collector:
    """``handle_batch`` for the tests: keeps every delivered message; can be told to fail."""

    def __init__(self) -> None:
        self.messages: list[CdcMessage] = []
        self.failures = 0
        self.fail_when: Callable[[list[CdcMessage]], bool] | None = None
        self._lock = threading.Lock()

    def __call__(self, batch: list[CdcMessage]) -> None:
        if self.fail_when is not None and self.fail_when(batch):
            self.fail_when = None  # once
            self.failures += 1
            raise RuntimeError("injected handler failure")
        with self._lock:
            self.messages.extend(batch)

    def changes(self, table: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [m.value for m in self.messages
                    if m.value is not None and "op" in m.value
                    and (table is None or m.value["source"]["table"] == table)]

    def wait(self, pred: Callable[[list[dict[str, Any]]], bool], what: str, capture: EmbeddedCapture,
             timeout: float = CAPTURE_TIMEOUT) -> list[dict[str, Any]]:
        """The changes delivered so far, once ``pred`` holds for them."""

        def ready() -> tuple[list[dict[str, Any]]] | None:
            changes = self.changes()
            return (changes,) if pred(changes) else None

        def diagnosis() -> str:
            got = [(c["op"], c["source"]["table"], _key(c)) for c in self.changes()]
            return f"{what} captured (error: {capture.error}); got {got}"

        (changes,) = eventually(ready, timeout, what=diagnosis)
        return changes


@dataclass
class Env:
    kind: str
    db: LegacyDatabase
    spec: SourceSpec
    state_dir: Path
    collector: Collector
    capture: EmbeddedCapture

    def execute(self, *statements: str) -> None:
        """Run statements in one transaction of the legacy app (admin connection)."""
        conn = self.db.admin_connect()
        try:
            with conn.cursor() as cur:
                for s in statements:
                    cur.execute(s)
            conn.commit()
        finally:
            conn.close()

    def restart(self, collector: Collector | None = None) -> None:
        self.capture.stop()
        self.collector = collector or Collector()
        self.capture = EmbeddedCapture(self.spec, self.state_dir, self.collector, JVM, topic_prefix=PREFIX)
        self.capture.start()
        self.capture.wait_capturing(CAPTURE_TIMEOUT)

    def wait_snapshot(self) -> list[dict[str, Any]]:
        """The seeded rows (product 1, orders 100 and 101) delivered as snapshot reads."""
        return self.collector.wait(lambda cs: len([c for c in cs if c["op"] == "r"]) >= 3, "snapshot",
                                   self.capture)

    def wait_committed(self) -> None:
        """Every batch delivered to the collector so far has been committed (its offsets flushed): the
        capture counts a batch's records only after ``markBatchFinished``."""
        eventually(lambda: self.capture.records == len(self.collector.messages), CAPTURE_TIMEOUT,
                   what=lambda: f"{len(self.collector.messages)} delivered records committed "
                                f"(committed: {self.capture.records}, error: {self.capture.error})")


def _key(change: dict[str, Any]) -> Any:
    row = change["after"] if change["after"] is not None else change["before"]
    return row.get("id") if row else None


def _position(change: dict[str, Any]) -> tuple[Any, ...]:
    """Identity of one change: table, op, key and where it is in the database's log."""
    s = change["source"]
    where = (s["lsn"], s["txId"]) if s["connector"] == "postgresql" else (s["file"], s["pos"], s["row"])
    return (s["table"], change["op"], _key(change), *where)


def _spec(db: LegacyDatabase, name: str) -> SourceSpec:
    return parse_source(db.declaration(name, "tenant-legacy", ("orders", "products")))


def _order_insert(order_id: int, status: str = "pending") -> str:
    return ("INSERT INTO orders (id, customer_id, product_id, quantity, unit_price_cents, currency, channel, "
            f"status, created_at, updated_at) VALUES ({order_id}, 7, 1, 2, 1250, 'EUR', 'web', '{status}', "
            "'2024-05-01 12:00:00.123456', '2024-05-01 12:00:00.123456')")


@pytest.fixture()
def env(request: pytest.FixtureRequest, kind: str, tmp_path: Path) -> Iterator[Env]:
    """The ``kind`` database reset and seeded with rows that exist before capture starts (product 1,
    orders 100 confirmed and 101 pending), and a capture of it that is running. Stopped afterwards, its
    Postgres slot and publication dropped."""
    db: LegacyDatabase = request.getfixturevalue(f"legacy_{kind}")
    db.reset()
    spec = _spec(db, f"emb_{kind[:5]}")
    collector = Collector()
    state = tmp_path / f"capture-{kind}"
    capture = EmbeddedCapture(spec, state, collector, JVM, topic_prefix=PREFIX)
    env = Env(kind, db, spec, state, collector, capture)
    env.execute(
        "INSERT INTO products (id, sku, name, category, price_cents, currency, updated_at) "
        "VALUES (1, 'SKU-1', 'Kettle', 'kitchen', 1250, 'EUR', '2024-05-01 11:00:00')",
        _order_insert(100, "confirmed"),
        _order_insert(101),
    )
    try:
        env.capture.start()
        env.capture.wait_capturing(CAPTURE_TIMEOUT)
        yield env
    finally:
        env.capture.stop()
        if kind == "postgres":
            drop_slot_and_publication(spec)


@pytest.mark.parametrize("kind", KINDS)
def test_snapshot_then_inserts_updates_deletes(env: Env, kind: str) -> None:
    changes = env.wait_snapshot()
    snap = {(c["source"]["table"], _key(c)): c for c in changes if c["op"] == "r"}
    assert set(snap) == {("products", 1), ("orders", 100), ("orders", 101)}
    order = snap[("orders", 100)]
    assert order["before"] is None
    assert order["after"]["status"] == "confirmed" and order["after"]["unit_price_cents"] == 1250
    assert order["after"]["currency"].strip() == "EUR"
    assert order["after"]["created_at"].startswith("2024-05-01T12:00:00.123456")  # isostring, microseconds
    assert order["source"]["snapshot"] in ("true", "first", "last", "first_in_data_collection",
                                           "last_in_data_collection")
    assert set(order) >= {"before", "after", "source", "op", "ts_ms", "transaction"}

    env.execute(_order_insert(102))
    env.execute("UPDATE orders SET status = 'shipped', quantity = 3 WHERE id = 100")
    env.execute("DELETE FROM orders WHERE id = 101")
    changes = env.collector.wait(lambda cs: any(c["op"] == "d" for c in cs), "insert/update/delete",
                                 env.capture)
    streamed = [c for c in changes if c["op"] != "r"]
    assert [(c["op"], _key(c)) for c in streamed] == [("c", 102), ("u", 100), ("d", 101)]
    ins, upd, dele = streamed
    assert ins["before"] is None and ins["after"]["status"] == "pending"
    assert upd["before"]["status"] == "confirmed" and upd["before"]["quantity"] == 2
    assert upd["after"]["status"] == "shipped" and upd["after"]["quantity"] == 3
    # full before image on delete (Postgres REPLICA IDENTITY FULL / MariaDB binlog_row_image=FULL)
    assert dele["after"] is None and dele["before"]["status"] == "pending"
    assert dele["before"]["customer_id"] == 7
    for c in streamed:
        s = c["source"]
        assert s["snapshot"] == "false" and s["table"] == "orders"
        if kind == "postgres":
            assert s["db"] == "shop" and s["schema"] == "public"
            assert isinstance(s["lsn"], int) and isinstance(s["txId"], int)
        else:
            assert s["db"] == "shop"
            assert s["file"].startswith("binlog.") and s["pos"] > 0 and s["row"] == 0
            assert s["gtid"] and s["server_id"] == 1
    positions = [_position(c) for c in streamed]
    assert len(set(positions)) == 3
    topics = {m.topic for m in env.collector.messages if m.value and "op" in m.value}
    assert topics == {f"{PREFIX}.{env.spec.name}.{env.db.schema}.orders",
                      f"{PREFIX}.{env.spec.name}.{env.db.schema}.products"}
    keys = {json.dumps(m.key) for m in env.collector.messages if m.topic.endswith(".orders")}
    assert keys == {'{"id": 100}', '{"id": 101}', '{"id": 102}'}
    env.wait_committed()  # the handler sees a batch before the capture commits and counts it
    assert env.capture.error is None and env.capture.batches >= 2  # snapshot and stream: separate batches


@pytest.mark.parametrize("kind", ["mariadb"])
def test_mariadb_schema_change_record(env: Env) -> None:
    env.wait_snapshot()
    env.execute("ALTER TABLE orders ADD COLUMN note VARCHAR(40) NULL")
    env.execute(_order_insert(103))
    env.collector.wait(lambda cs: any(_key(c) == 103 for c in cs), "insert after ALTER", env.capture)
    ddl = [m for m in env.collector.messages
           if m.value and "ddl" in m.value and "ADD COLUMN note" in m.value["ddl"]]
    assert len(ddl) == 1
    rec = ddl[0]
    assert rec.topic == f"{PREFIX}.{env.spec.name}" and rec.key == {"databaseName": "shop"}
    assert rec.value is not None
    assert rec.value["databaseName"] == "shop" and rec.value["source"]["snapshot"] == "false"
    (change,) = rec.value["tableChanges"]
    assert change["type"] == "ALTER" and change["id"] == '"shop"."orders"'
    assert "note" in [c["name"] for c in change["table"]["columns"]]
    row = next(c for c in env.collector.changes("orders") if _key(c) == 103)
    assert "note" in row["after"]  # the new column is in the row images from then on


@pytest.mark.parametrize("kind", KINDS)
def test_restart_resumes_from_stored_offsets(env: Env, kind: str) -> None:
    env.wait_snapshot()
    env.execute(_order_insert(102))  # streamed before the stop: its commit also records the finished snapshot
    env.collector.wait(lambda cs: any(c["op"] == "c" and _key(c) == 102 for c in cs),
                       "insert before the stop", env.capture)
    env.capture.stop()  # lets a batch inside the handler finish and commit
    assert not env.capture.running
    before = env.collector.changes()
    # the legacy app keeps writing while capture is down
    env.execute(_order_insert(200))
    env.execute("UPDATE orders SET status = 'delivered' WHERE id = 100")
    env.execute(_order_insert(201), _order_insert(202))
    env.execute("DELETE FROM orders WHERE id = 102")
    env.restart()
    changes = env.collector.wait(lambda cs: any(c["op"] == "d" and _key(c) == 102 for c in cs),
                                 "changes written while stopped", env.capture)
    assert [(c["op"], _key(c)) for c in changes] == [
        ("c", 200), ("u", 100), ("c", 201), ("c", 202), ("d", 102)]
    assert not any(c["op"] == "r" for c in changes)  # no re-snapshot
    assert not {_position(c) for c in changes} & {_position(c) for c in before}  # nothing delivered twice
    # the restarted engine streams on
    env.execute(_order_insert(203))
    env.collector.wait(lambda cs: any(_key(c) == 203 for c in cs), "insert after restart", env.capture)
    assert env.capture.engine_start_seconds is not None


@pytest.mark.parametrize("kind", KINDS)
def test_failing_handler_gets_the_batch_again(env: Env, kind: str) -> None:
    env.wait_snapshot()
    # a streamed change committed first: the snapshot is recorded as finished (a failure right after it
    # would repeat the snapshot instead of re-delivering the failed batch)
    env.execute(_order_insert(299))
    env.collector.wait(lambda cs: any(_key(c) == 299 for c in cs), "insert before the failure", env.capture)
    env.wait_committed()
    env.collector.fail_when = lambda batch: any(m.value and m.value.get("op") == "c" for m in batch)
    restarts = env.capture.restarts
    env.execute(_order_insert(300))
    changes = env.collector.wait(lambda cs: any(_key(c) == 300 for c in cs), "re-delivered insert",
                                 env.capture)
    assert env.collector.failures == 1 and env.capture.restarts == restarts + 1
    assert [(c["op"], _key(c)) for c in changes if _key(c) == 300] == [("c", 300)]
    # the error is cleared once the re-delivered batch is committed
    eventually(lambda: env.capture.error is None, CAPTURE_TIMEOUT,
               what=lambda: f"error cleared (error: {env.capture.error})")
    assert env.capture.running


def _unreachable_spec(name: str) -> SourceSpec:
    return parse_source({
        "name": name, "kind": "postgres",
        "connection": {"host": "127.0.0.1", "port": 9, "database": "shop", "user": "x", "password": "y"},
        "tables": [{"table": "public.orders", "translator": "orders"}], "tenant": "t",
    })


def test_unreachable_database_is_retried_not_raised(tmp_path: Path) -> None:
    capture = EmbeddedCapture(_unreachable_spec("emb_down"), tmp_path / "state", Collector(), JVM,
                              topic_prefix=PREFIX)
    try:
        capture.start()
        eventually(lambda: capture.restarts >= 2, CAPTURE_TIMEOUT,
                   what=lambda: f"two failed attempts (restarts: {capture.restarts}, error: {capture.error})")
        assert capture.running and not capture.capturing
        assert capture.error is not None and "Connection" in capture.error
    finally:
        capture.stop()
    assert not capture.running


def test_stop_interrupts_the_retry_backoff(tmp_path: Path) -> None:
    """After a failure the capture waits an hour before the next attempt; ``stop()`` ends that wait: its
    thread is gone when ``stop()`` returns (``stop`` joins it for at most 30 s, far less than the hour)."""
    capture = EmbeddedCapture(_unreachable_spec("emb_down2"), tmp_path / "state", Collector(), JVM,
                              topic_prefix=PREFIX, backoff_initial=3600.0, backoff_max=3600.0)
    try:
        capture.start()
        # restarts is counted right before the backoff wait starts
        eventually(lambda: capture.restarts >= 1, CAPTURE_TIMEOUT,
                   what=lambda: f"a failed attempt (error: {capture.error})")
        assert capture.restarts == 1 and capture.running and not capture.capturing
    finally:
        capture.stop()
    assert capture._thread is not None and not capture._thread.is_alive()
    assert capture.restarts == 1  # no attempt after the stop


@pytest.mark.parametrize("kind", ["postgres"])
def test_lost_slot_is_refused_and_nothing_left_behind(env: Env) -> None:
    """A Postgres slot dropped under stored offsets is refused (Debezium would silently create a new slot
    at the current WAL position and skip the gap); stopping leaves no engine, and dropping the slot and
    publication leaves nothing on the legacy database."""
    env.wait_snapshot()
    env.execute(_order_insert(102))  # a streamed change: the offsets hold a stream position (lsn)
    env.collector.wait(lambda cs: any(_key(c) == 102 for c in cs), "insert before the stop", env.capture)
    env.capture.stop()  # commits the batch in the handler
    drop_slot_and_publication(env.spec)
    env.execute(_order_insert(400))  # lost to CDC: the slot that would have kept it is gone
    capture = EmbeddedCapture(env.spec, env.state_dir, Collector(), JVM, topic_prefix=PREFIX)
    try:
        capture.start()
        eventually(lambda: capture.restarts >= 1, CAPTURE_TIMEOUT,
                   what=lambda: f"a refused start (error: {capture.error})")
        assert capture.error is not None
        assert "replication slot" in capture.error and "is gone" in capture.error
        assert not capture.capturing
    finally:
        capture.stop()
    with psycopg.connect(host=env.db.host, port=env.db.port, dbname=env.db.database, user=env.db.user,
                         password=env.db.password, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s",
                            (slot_name(env.spec),)).fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM pg_publication WHERE pubname = %s",
                            (publication_name(env.spec),)).fetchone() == (0,)

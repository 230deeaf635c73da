from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from event_log import order_write as write
from sqlalchemy.engine import Engine

from commands.ports import StreamWrite
from connectors.checkpoints import CheckpointStore
from connectors.database import connect_raw
from connectors.event_store import NOTIFY_CHANNEL, PostgresEventStore
from connectors.tailer import PostgresTailer, TailBatch, TailCursor
from domain.events import NewEvent

pytestmark = pytest.mark.integration

T = "tenant-a"
HANG_S = 60.0  # bounds a hang; a correct run never waits that long


@pytest.fixture()
def store(engine: Engine) -> PostgresEventStore:
    return PostgresEventStore(engine)


@pytest.fixture()
def tailer(engine: Engine, pg_url: str) -> Iterator[PostgresTailer]:
    with PostgresTailer(engine, pg_url) as t:
        yield t


def drain(
    tailer: PostgresTailer, cursor: TailCursor | None, limit: int = 1000
) -> tuple[list[int], TailBatch]:
    positions: list[int] = []
    while True:
        batch = tailer.fetch(cursor, limit)
        positions += [e.position for e in batch.events]
        cursor = batch.cursor
        if batch.caught_up:
            return positions, batch


def test_empty_store(tailer: PostgresTailer) -> None:
    batch = tailer.fetch(None, 10)
    assert batch.events == [] and batch.caught_up and batch.watermark == 0
    assert batch.cursor == TailCursor(0, 0)


def test_fetch_in_order_with_paging(store: PostgresEventStore, tailer: PostgresTailer) -> None:
    for i in range(5):
        store.append(T, [write(f"ORD-{i}", 0, 3)], {})
    first = tailer.fetch(None, 4)
    assert [e.position for e in first.events] == [1, 2, 3, 4]
    assert not first.caught_up
    assert first.watermark == 0  # not every row below xmin fetched yet
    assert first.cursor == TailCursor(first.events[-1].transaction_id, 4)
    rest, last = drain(tailer, first.cursor, 4)
    assert rest == list(range(5, 16))
    assert last.watermark == 15  # idle store: catches up in the same poll
    again = tailer.fetch(last.cursor, 4)
    assert again.events == [] and again.caught_up and again.cursor == last.cursor and again.watermark == 15


def test_open_transaction_holds_back_later_commits(
    engine: Engine, store: PostgresEventStore, tailer: PostgresTailer
) -> None:
    store.append(T, [write("ORD-0", 0)], {})  # position 1
    seen, batch = drain(tailer, None)
    assert (seen, batch.watermark) == ([1], 1)
    with engine.connect() as slow:
        slow.begin()
        held = store.append_on(slow, T, [write("ORD-SLOW", 0)], {}).last_position  # position 2, uncommitted
        later = store.append(T, [write("ORD-FAST", 0)], {}).last_position  # position 3, committed
        assert (held, later) == (2, 3)

        seen, batch = drain(tailer, batch.cursor)
        assert seen == []  # position 3 committed but its xid is not below xmin yet
        assert batch.watermark == 1  # position 2 may still commit
        slow.commit()
    seen2, batch2 = drain(tailer, batch.cursor)
    assert seen2 == [2, 3]  # commit order is preserved by (xid, position)
    assert batch2.watermark == 3


def test_rolled_back_positions_do_not_block_watermark(
    engine: Engine, store: PostgresEventStore, tailer: PostgresTailer
) -> None:
    with engine.connect() as conn:
        conn.begin()
        store.append_on(conn, T, [write("ORD-RB", 0, 2)], {})  # positions 1, 2
        store.append(T, [write("ORD-OK", 0)], {})  # position 3
        seen, batch = drain(tailer, None)
        assert seen == [] and batch.watermark == 0
        conn.rollback()
    seen, batch = drain(tailer, batch.cursor)
    assert seen == [3]
    assert batch.watermark == 3


def test_events_are_upcast(store: PostgresEventStore, tailer: PostgresTailer) -> None:
    v1 = NewEvent("order", "ORD-20260101-0001", "OrderPlaced", {
        "order_id": "ORD-20260101-0001", "user_id": "USR-00001", "currency": "USD",
        "lines": [{"product_id": "PROD-001", "quantity": 1, "unit_price": "3.00"}],
    }, schema_version=1)
    store.append(T, [StreamWrite("order", "ORD-20260101-0001", 0, [v1])], {"actor": "x"})
    (e,) = tailer.fetch(None, 10).events
    assert e.schema_version == 2 and e.data["total_minor"] == 300 and e.metadata == {"actor": "x"}


def test_resume_from_cursor(engine: Engine, store: PostgresEventStore, tailer: PostgresTailer) -> None:
    store.append(T, [write("ORD-1", 0, 2)], {})
    batch = tailer.fetch(None, 100)
    store.append(T, [write("ORD-1", 2, 2)], {})
    with PostgresTailer(engine) as fresh:
        resumed = fresh.fetch(batch.cursor, 100)
    assert [e.position for e in resumed.events] == [3, 4]
    assert resumed.watermark == 4


class NotifiesSpy:
    """Wraps the tailer's LISTEN connection's ``notifies``: records each call's timeout and says when
    a wait is under way."""

    def __init__(self, conn: Any) -> None:
        self.inner = conn.notifies
        self.timeouts: list[float | None] = []
        self.waiting = threading.Event()
        conn.notifies = self

    def __call__(self, *, timeout: float | None = None, stop_after: int | None = None) -> Any:
        self.timeouts.append(timeout)
        self.waiting.set()
        return self.inner(timeout=timeout, stop_after=stop_after)


def test_wait_wakes_on_notify_and_times_out(
    pg_url: str, store: PostgresEventStore, tailer: PostgresTailer
) -> None:
    tailer.fetch(None, 10)  # establishes LISTEN
    listener = tailer._listener
    assert listener is not None
    spy = NotifiesSpy(listener)
    assert tailer.wait(0.2) is False  # nothing notified: times out ...
    assert spy.timeouts == [0.2]  # ... after waiting for notifications for the whole timeout

    woken: list[bool] = []
    waiter = threading.Thread(target=lambda: woken.append(tailer.wait(HANG_S)))
    spy.waiting.clear()
    waiter.start()
    try:
        assert spy.waiting.wait(HANG_S)  # the wait is under way ...
        store.append(T, [write("ORD-1", 0)], {})  # ... when the NOTIFY comes
    finally:
        waiter.join(HANG_S)
    assert not waiter.is_alive()
    assert woken == [True]

    for i in range(20):  # a burst wakes once, then the queue is drained
        store.append(T, [write(f"ORD-B{i}", 0)], {})
    # a round trip on the LISTEN connection: Postgres sends the notifications it has for a session
    # before its ReadyForQuery, so all 20 are now with the client (psycopg keeps them for notifies())
    listener.execute("SELECT 1")
    assert tailer.wait(HANG_S) is True
    # nothing of the burst is left: a NOTIFY sent now is the next one the connection gets
    with connect_raw(pg_url) as other:
        other.execute("SELECT pg_notify(%s, 'marker')", (NOTIFY_CHANNEL,))
        other.commit()
    assert [n.payload for n in spy.inner(timeout=HANG_S, stop_after=1)] == ["marker"]


def test_wait_reconnects_after_connection_loss(
    pg_url: str, store: PostgresEventStore, tailer: PostgresTailer
) -> None:
    tailer.fetch(None, 10)
    lost = tailer._listener
    with connect_raw(pg_url) as admin:
        killed = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'agentflow-tailer'"
        ).fetchall()
    assert killed
    # loss is reported as a wake-up (poll rather than trust silence); nothing is appended meanwhile
    assert tailer.wait(HANG_S) is True
    assert tailer._listener is None
    tailer.fetch(None, 10)  # re-LISTENs
    assert tailer._listener is not None and tailer._listener is not lost
    store.append(T, [write("ORD-1", 0)], {})
    assert tailer.wait(HANG_S) is True  # the new LISTEN connection gets the NOTIFY


def test_checkpoint_store(engine: Engine) -> None:
    cps = CheckpointStore(engine)
    assert cps.load("p") == (None, 0)
    cps.save("p", TailCursor(10, 5), 5)
    assert cps.load("p") == (TailCursor(10, 5), 5)
    cps.save("p", TailCursor(12, 9), 9)
    assert cps.load("p") == (TailCursor(12, 9), 9)
    cps.save("p", None, 11)  # watermark only
    assert cps.load("p") == (TailCursor(12, 9), 11)

    class Boom(Exception):
        pass

    with pytest.raises(Boom), engine.begin() as conn:  # joins the sink's transaction
        cps.save("p", TailCursor(99, 99), 99, conn=conn)
        raise Boom
    assert cps.load("p") == (TailCursor(12, 9), 11)
    with engine.begin() as conn:
        cps.save("q", TailCursor(1, 1), 1, conn=conn)
    assert set(cps.all()) == {"p", "q"}
    cps.delete("p")
    assert cps.load("p") == (None, 0)

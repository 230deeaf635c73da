"""Embedded deployment: the store skips NOTIFY and wakes in-process tailers after each commit."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from event_log import order_write as write
from sqlalchemy.engine import Engine

from commands.ports import AppendResult, VersionConflict
from connectors.database import connect_raw
from connectors.event_store import PostgresEventStore
from connectors.tailer import PostgresTailer

pytestmark = pytest.mark.integration

T = "tenant-a"
HANG_S = 60.0  # bounds a hang; a correct run never waits that long
MARKER = "end-of-test-marker"


class SpyEvent(threading.Event):
    """The tailer's wake-up event, telling the test when a wait() is under way and for how long."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = threading.Event()
        self.timeouts: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.timeouts.append(timeout)
        self.waiting.set()
        return super().wait(timeout)


@pytest.fixture()
def store(engine: Engine) -> PostgresEventStore:
    return PostgresEventStore(engine, notify=False)


@pytest.fixture()
def tailer(engine: Engine, pg_url: str, store: PostgresEventStore) -> Iterator[PostgresTailer]:
    # a poll interval far beyond any test step: a wait() that returns True was woken, not polled
    with PostgresTailer(engine, pg_url, listen=False, poll_interval=HANG_S) as t:
        t._woken = SpyEvent()
        store.add_commit_listener(t.wake)
        yield t


def test_no_notify_and_listeners_run_after_commit(pg_url: str, store: PostgresEventStore) -> None:
    seen: list[tuple[AppendResult, int]] = []

    def listener(result: AppendResult) -> None:
        with connect_raw(pg_url) as other:  # committed: another session sees the events
            seen.append((result, other.execute("SELECT count(*) FROM events").fetchone()[0]))  # type: ignore[index]

    def broken(result: AppendResult) -> None:
        raise RuntimeError("listener bug")

    store.add_commit_listener(broken)
    store.add_commit_listener(listener)
    with connect_raw(pg_url) as watcher:
        watcher.execute("LISTEN agentflow_events")
        res = store.append(T, [write("ORD-1", 0, 2)], {})  # a failing listener does not fail the append
        # a NOTIFY committed after the append arrives after any the append would have sent
        with connect_raw(pg_url) as other:
            other.execute("SELECT pg_notify('agentflow_events', %s)", (MARKER,))
            other.commit()
        received = [n.payload for n in watcher.notifies(timeout=HANG_S, stop_after=1)]
        assert received == [MARKER]  # the first notification is the marker: the append sent none
    assert seen == [(res, 2)]
    with pytest.raises(VersionConflict):
        store.append(T, [write("ORD-1", 0)], {})
    assert len(seen) == 1  # nothing committed, nobody woken
    store.remove_commit_listener(listener)
    store.append(T, [write("ORD-2", 0)], {})
    assert len(seen) == 1


def test_tailer_is_woken_by_in_process_commits(store: PostgresEventStore, tailer: PostgresTailer) -> None:
    spy = tailer._woken
    assert isinstance(spy, SpyEvent)
    cursor = tailer.fetch(None, 10).cursor
    assert tailer._listener is None  # listen=False opens no LISTEN connection
    woken: list[bool] = []
    waiter = threading.Thread(target=lambda: woken.append(tailer.wait(HANG_S)))
    waiter.start()
    try:
        assert spy.waiting.wait(HANG_S)  # the wait is under way ...
        store.append(T, [write("ORD-1", 0)], {})  # ... when the commit lands
    finally:
        waiter.join(HANG_S)
    assert not waiter.is_alive()
    assert woken == [True]  # woken by the commit listener: the poll interval is far longer
    batch = tailer.fetch(cursor, 10)
    assert [e.stream_id for e in batch.events] == ["ORD-1"]
    assert batch.watermark == batch.events[-1].position  # idle store: the watermark caught up
    # a commit between fetch and wait is not lost: the next wait returns woken
    store.append(T, [write("ORD-2", 0)], {})
    assert tailer.wait(HANG_S) is True
    assert [e.stream_id for e in tailer.fetch(batch.cursor, 10).events] == ["ORD-2"]


def test_writes_from_other_processes_are_polled(
    engine: Engine, store: PostgresEventStore, tailer: PostgresTailer
) -> None:
    spy = tailer._woken
    assert isinstance(spy, SpyEvent)
    tailer.poll_interval = 0.2
    cursor = tailer.fetch(None, 10).cursor
    # nothing happened: not woken, and the wait was bounded by poll_interval, not by the timeout
    assert tailer.wait(3600) is False
    assert spy.timeouts == [0.2]
    PostgresEventStore(engine, notify=False).append(T, [write("ORD-X", 0)], {})  # no listener of ours
    assert tailer.wait(3600) is False  # nobody wakes the tailer: only its poll finds the write
    assert spy.timeouts == [0.2, 0.2]
    assert [e.stream_id for e in tailer.fetch(cursor, 10).events] == ["ORD-X"]

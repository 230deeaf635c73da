"""Embedded deployment: the store skips NOTIFY and wakes in-process tailers after each commit."""

from __future__ import annotations

import threading
import time
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


@pytest.fixture()
def store(engine: Engine) -> PostgresEventStore:
    return PostgresEventStore(engine, notify=False)


@pytest.fixture()
def tailer(engine: Engine, pg_url: str, store: PostgresEventStore) -> Iterator[PostgresTailer]:
    with PostgresTailer(engine, pg_url, listen=False, poll_interval=0.5) as t:
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
        assert list(watcher.notifies(timeout=0.3, stop_after=1)) == []
    assert seen == [(res, 2)]
    with pytest.raises(VersionConflict):
        store.append(T, [write("ORD-1", 0)], {})
    assert len(seen) == 1  # nothing committed, nobody woken
    store.remove_commit_listener(listener)
    store.append(T, [write("ORD-2", 0)], {})
    assert len(seen) == 1


def test_tailer_is_woken_by_in_process_commits(store: PostgresEventStore, tailer: PostgresTailer) -> None:
    cursor = tailer.fetch(None, 10).cursor
    assert tailer._listener is None  # listen=False opens no LISTEN connection
    threading.Timer(0.05, lambda: store.append(T, [write("ORD-1", 0)], {})).start()
    t0 = time.monotonic()
    assert tailer.wait(5) is True
    assert time.monotonic() - t0 < 0.4  # well before the 0.5 s poll
    batch = tailer.fetch(cursor, 10)
    assert [e.stream_id for e in batch.events] == ["ORD-1"]
    assert batch.watermark == batch.events[-1].position  # idle store: the watermark caught up
    # a commit between fetch and wait is not lost: the next wait returns at once
    store.append(T, [write("ORD-2", 0)], {})
    t0 = time.monotonic()
    assert tailer.wait(5) is True and time.monotonic() - t0 < 0.1
    assert [e.stream_id for e in tailer.fetch(batch.cursor, 10).events] == ["ORD-2"]


def test_writes_from_other_processes_are_polled(
    engine: Engine, store: PostgresEventStore, tailer: PostgresTailer
) -> None:
    cursor = tailer.fetch(None, 10).cursor
    t0 = time.monotonic()
    assert tailer.wait(5) is False  # nothing happened: returns after poll_interval, not timeout
    assert 0.4 <= time.monotonic() - t0 < 1.5
    PostgresEventStore(engine, notify=False).append(T, [write("ORD-X", 0)], {})  # no listener of ours
    tailer.wait(5)
    assert [e.stream_id for e in tailer.fetch(cursor, 10).events] == ["ORD-X"]

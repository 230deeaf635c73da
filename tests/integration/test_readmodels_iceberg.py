"""Iceberg sink with a real pyiceberg SqlCatalog in the real Postgres fixture."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pyiceberg.catalog.sql import SqlCatalog

from connectors.iceberg_sink import (
    CURSOR_POSITION,
    CURSOR_TXID,
    EVENTS_SCHEMA,
    WATERMARK,
    IcebergSink,
    latest_rows,
    make_catalog,
)
from domain.events import RecordedEvent

pytestmark = pytest.mark.integration


class ManualClock:
    """The sink's clock (buffer age), moved only by the test."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _events(tenant: str) -> list[RecordedEvent]:
    from test_readmodels import shop

    return shop(tenant, n_orders=40, seed=5).events


@pytest.fixture()
def catalog(pg_url: str, tmp_path: Path) -> SqlCatalog:
    # a catalog name of its own per test: same Postgres tables, separate namespace entries
    return make_catalog(pg_url, tmp_path, name=f"test_{uuid.uuid4().hex[:8]}")


def _rows(sink: IcebergSink, table: str) -> list[dict[str, Any]]:
    return sink.table(table).scan().to_arrow().to_pylist()


def _cursor(e: RecordedEvent) -> tuple[int, int]:
    return (e.transaction_id, e.position)


def test_batched_commits_carry_the_checkpoint(catalog: SqlCatalog) -> None:
    events = _events("ice-a")
    clock = ManualClock()
    sink = IcebergSink(catalog, max_rows=10_000, max_age_seconds=3600, clock=clock)
    assert sink.load_checkpoint() == (None, 0)
    for i in range(0, len(events), 50):
        chunk = events[i : i + 50]
        sink.apply(chunk, _cursor(chunk[-1]), chunk[-1].position)
    clock.now += 3599
    sink.tick()
    assert sink.commits == 0  # neither count nor age reached: nothing committed yet
    sink.flush()
    assert sink.commits == 1
    snap = sink.table("events").current_snapshot()
    assert snap is not None
    props = snap.summary.additional_properties  # type: ignore[union-attr]
    assert (int(props[CURSOR_TXID]), int(props[CURSOR_POSITION]), int(props[WATERMARK])) == (
        *_cursor(events[-1]),
        events[-1].position,
    )
    stored = _rows(sink, "events")
    assert sorted(r["position"] for r in stored) == [e.position for e in events]

    orders = latest_rows(_rows(sink, "orders_history"), "order_id")
    placed = {e.stream_id for e in events if e.event_type == "OrderPlaced"}
    assert {k[1] for k in orders} == placed
    cancelled = {e.stream_id for e in events if e.event_type == "OrderCancelled"}
    assert {k[1] for k, r in orders.items() if r["status"] == "cancelled"} == cancelled
    n_order_events = sum(1 for e in events if e.stream_type == "order")
    assert len(_rows(sink, "orders_history")) == n_order_events
    payments = latest_rows(_rows(sink, "payments_history"), "payment_id")
    failed = {e.stream_id for e in events if e.event_type == "PaymentFailed"}
    assert {k[1] for k, r in payments.items() if r["status"] == "failed"} == failed

    # restart: resumes from the snapshot properties; replaying the tail adds nothing
    again = IcebergSink(catalog, max_rows=10_000, max_age_seconds=3600, clock=ManualClock())
    assert again.load_checkpoint() == (_cursor(events[-1]), events[-1].position)
    again.apply(events[-30:], _cursor(events[-1]), events[-1].position)
    again.flush()
    assert len(_rows(again, "events")) == len(events)
    assert len(_rows(again, "orders_history")) == n_order_events


def test_commit_by_count_and_age(catalog: SqlCatalog) -> None:
    events = _events("ice-b")
    clock = ManualClock()
    sink = IcebergSink(catalog, max_rows=200, max_age_seconds=5.0, clock=clock)
    sink.apply(events[:300], _cursor(events[299]), events[299].position)
    assert sink.commits == 1  # count threshold
    clock.now += 60  # the buffer's age counts from its first event, not from the last commit
    sink.apply(events[300:310], _cursor(events[309]), events[309].position)
    clock.now += 4.5
    sink.tick()
    assert sink.commits == 1  # younger than max_age_seconds: still buffered
    clock.now += 0.5
    sink.tick()  # age threshold reached
    assert sink.commits == 2
    assert len(_rows(sink, "events")) == 310


def test_crash_between_table_commits_loses_and_duplicates_nothing(catalog: SqlCatalog) -> None:
    events = _events("ice-c")
    first, rest = events[:200], events[200:]
    sink = IcebergSink(catalog, max_rows=10_000, max_age_seconds=3600, clock=ManualClock())
    sink.apply(first, _cursor(first[-1]), first[-1].position)
    sink.flush()
    # second batch: "crash" after the events table committed, before the history tables
    sink.apply(rest, _cursor(rest[-1]), rest[-1].position)
    data = pa.Table.from_pylist(sink.buffers["events"], schema=EVENTS_SCHEMA)
    sink.tables["events"].append(
        data,
        snapshot_properties={
            CURSOR_TXID: str(rest[-1].transaction_id),
            CURSOR_POSITION: str(rest[-1].position),
            WATERMARK: str(rest[-1].position),
        },
    )

    restarted = IcebergSink(catalog, max_rows=10_000, max_age_seconds=3600, clock=ManualClock())
    assert restarted.load_checkpoint() == (_cursor(first[-1]), first[-1].position)  # the oldest table
    restarted.apply(rest, _cursor(rest[-1]), rest[-1].position)
    restarted.flush()
    assert sorted(r["position"] for r in _rows(restarted, "events")) == [e.position for e in events]
    assert len(_rows(restarted, "orders_history")) == sum(1 for e in events if e.stream_type == "order")
    assert len(_rows(restarted, "payments_history")) == sum(1 for e in events if e.stream_type == "payment")
    assert restarted.load_checkpoint() == (_cursor(rest[-1]), rest[-1].position)

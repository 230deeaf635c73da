"""Dead-letter replay, read-model rebuild and range replay to a webhook, on real Postgres and chdb."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from chdb_store import chdb_store
from secret_keys import TEST_BOX
from sqlalchemy import text
from sqlalchemy.engine import Engine

from commands.dead_letter_replay import DeadLetterReplayer, ReplayConflict, ReplayRejected
from commands.ports import StreamWrite
from connectors.clickhouse import ClickHouseStore
from connectors.clickhouse_sink import ClickHouseSink
from connectors.dead_letters import (
    DISMISSED,
    FAILED,
    REPLAYED,
    DeadLetter,
    DeadLetterFilter,
    DeadLetterStore,
)
from connectors.event_lookup import EventLookup
from connectors.event_store import PostgresEventStore
from connectors.webhook_store import WebhookStore
from domain.events import EVENT_TYPES, NewEvent, RecordedEvent
from projections.rows import TABLES
from readmodels.webhooks import replay_range_to_endpoint
from services.rebuild import Rebuilds, SinkGate

pytestmark = pytest.mark.integration

T = "t-replay"
HANG_S = 120.0  # bounds a hang (projector, rebuild and chdb on a loaded machine); never a latency
LINE = {"product_id": "PROD-1", "quantity": 2, "unit_price_minor": 500}


@pytest.fixture(scope="module")
def ch() -> Iterator[ClickHouseStore]:
    s = chdb_store("dl_replay_test")
    s.drop_all()
    s.ensure_schema()
    yield s
    s.drop_all()


def _append(store: PostgresEventStore, stream_type: str, sid: str, event_type: str, **data: Any) -> int:
    head = store.stream_version(T, stream_type, sid)
    new = NewEvent(stream_type, sid, event_type, data, EVENT_TYPES[event_type][1])
    return store.append(T, [StreamWrite(stream_type, sid, head, [new])], {"actor": "test"}).last_position


def _insert_raw(engine: Engine, order_id: str, data: dict[str, Any]) -> tuple[int, str]:
    """An event written past the command checks (as a CDC source or a bug would)."""
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_current_xact_id()"))
        row = conn.execute(
            text(
                "INSERT INTO events (tenant_id, stream_type, stream_id, stream_version, event_type, "
                "schema_version, data) VALUES (:t, 'order', :sid, 1, 'OrderPlaced', 2, CAST(:d AS jsonb)) "
                "RETURNING position, event_id::text"
            ),
            {"t": T, "sid": order_id, "d": json.dumps(data)},
        ).one()
    return int(row[0]), str(row[1])


def _project(store: PostgresEventStore, sink: ClickHouseSink) -> list[RecordedEvent]:
    events = store.read_all(0, limit=10_000)
    sink.apply(events, None, events[-1].position)
    return events


def _order(oid: str, total: int) -> dict[str, Any]:
    return {"order_id": oid, "user_id": "u1", "currency": "USD", "channel": "web", "lines": [LINE],
            "total_minor": total}  # fmt: skip


def test_dead_letter_corrected_replayed_and_projected(engine: Engine, ch: ClickHouseStore) -> None:
    store = PostgresEventStore(engine)
    letters = DeadLetterStore(engine)

    def reject(e: RecordedEvent, reason: str) -> None:
        letter = DeadLetter(
            "embedded", "validate", reason, event_id=str(e.event_id), position=e.position,
            tenant_id=e.tenant_id, event_type=e.event_type, record={"data": e.data},
        )  # fmt: skip
        letters.add([letter])

    sink = ClickHouseSink(ch, None, reject=reject)
    _append(store, "product", "PROD-1", "ProductRegistered", product_id="PROD-1", name="Mug", category="k",
            price_minor=500, currency="USD")  # fmt: skip
    bad_pos, bad_id = _insert_raw(engine, "ORD-BAD", _order("ORD-BAD", 1))
    bad2_pos, _ = _insert_raw(engine, "ORD-BAD2", _order("ORD-BAD2", 7))
    _project(store, sink)
    assert ch.get_row("orders", (T, "ORD-BAD")) is None

    page = letters.page(T, DeadLetterFilter(status=FAILED), limit=1)
    assert len(page) == 1 and page[0].position == bad2_pos  # newest first
    older = letters.page(T, DeadLetterFilter(status=FAILED), limit=1, before_id=page[0].id)
    assert [d.position for d in older] == [bad_pos]
    assert letters.page(T, DeadLetterFilter(event_type="OrderCancelled")) == []
    assert letters.page("other-tenant") == []
    letter = older[0]
    assert letter.id is not None and letter.reason_class == "total_mismatch"
    stats = letters.stats(T)
    assert stats["total"] == 2 and stats["by_status"][FAILED] == 2
    assert stats["by_reason_class"] == {"total_mismatch": 2} and stats["by_pipeline"] == {"embedded": 2}

    replayer = DeadLetterReplayer(EventLookup(engine), store, letters)
    # no correction: the original is still invalid -> rejected, nothing written, still failed
    head = store.head_position()
    with pytest.raises(ReplayRejected, match="sum of lines"):
        replayer.replay(T, letter.id)
    with pytest.raises(ReplayRejected, match="unexpected fields"):
        replayer.replay(T, letter.id, {**_order("ORD-BAD", 1000), "oops": 1})
    assert store.head_position() == head
    assert letters.get(T, letter.id).status == FAILED  # type: ignore[union-attr]

    done = replayer.replay(T, letter.id, _order("ORD-BAD", 1000), correlation_id="cid-1")
    assert done.appended and done.position > head
    assert done.letter.status == REPLAYED and done.letter.replay_position == done.position
    assert done.letter.corrected_data["total_minor"] == 1000
    again = replayer.replay(T, letter.id, _order("ORD-BAD", 1000))
    assert not again.appended and again.position == done.position
    assert store.head_position() == done.position  # replaying twice appended once
    with pytest.raises(ReplayConflict):
        replayer.replay(T, letter.id, _order("ORD-BAD", 2000))
    # a lost status update (crash after the append): the idempotency key finds the first append
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE dead_letters SET status = 'replay_pending' WHERE id = :id"), {"id": letter.id}
        )
    recovered = replayer.replay(T, letter.id, _order("ORD-BAD", 1000))
    assert not recovered.appended and recovered.position == done.position
    assert store.head_position() == done.position

    stream = store.load_stream(T, "order", "ORD-BAD")
    assert [e.stream_version for e in stream] == [1, 2]  # the bad event stays as history
    meta = stream[1].metadata["replay_of"]
    assert meta["dead_letter_id"] == str(letter.id) and meta["event_id"] == bad_id
    assert meta["position"] == bad_pos and stream[1].metadata["correlation_id"] == "cid-1"

    _project(store, sink)  # the same projection code: the corrected event lands, the bad one stays out
    row = ch.get_row("orders", (T, "ORD-BAD"))
    assert row is not None and row["total_minor"] == 1000
    assert letters.count(T) == 2  # replaying the whole store dead-letters nothing new

    other = letters.page(T, DeadLetterFilter(status=FAILED))[0]
    dismissed = replayer.dismiss(T, other.id, "duplicate")  # type: ignore[arg-type]
    assert dismissed.status == DISMISSED and dismissed.status_note == "duplicate"
    assert replayer.dismiss(T, other.id).status == DISMISSED  # type: ignore[arg-type]
    with pytest.raises(ReplayConflict):
        replayer.replay(T, other.id, _order("ORD-BAD2", 1000))  # type: ignore[arg-type]
    with pytest.raises(ReplayConflict):
        replayer.dismiss(T, letter.id)
    stats = letters.stats(T)
    assert stats["by_status"] == {FAILED: 0, "replay_pending": 0, REPLAYED: 1, DISMISSED: 1}


def _snapshot(ch: ClickHouseStore, tenant: str) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for table in TABLES:
        rows = ch.select_rows(table, tenant)
        out[table] = sorted(json.dumps(r, sort_keys=True, default=str) for r in rows)  # type: ignore[misc]
    return out  # type: ignore[return-value]


def test_rebuild_swaps_in_an_identical_read_model_while_the_projector_runs(
    engine: Engine, ch: ClickHouseStore
) -> None:
    from test_crash_recovery import Writer

    from connectors.tailer import PostgresTailer, TailCursor
    from projections.runner import ProjectionRunner

    tenant = f"rb-{uuid.uuid4().hex[:12]}"
    store = PostgresEventStore(engine)
    writer = Writer(store, tenant, 7)
    writer.setup()
    for _ in range(60):
        writer.step()
    gate = SinkGate(ClickHouseSink(ch, None))
    runner = ProjectionRunner("rb", PostgresTailer(engine), gate, batch_size=50,
                              start_cursor=TailCursor(0, 0), idle_wait=0.05)  # fmt: skip
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,))
    thread.start()
    swapped: list[bool] = []
    try:
        assert runner.wait_for(writer.last_position, HANG_S)
        rebuilds = Rebuilds(store, ch, gate, lambda: runner.status.watermark,
                            on_swapped=lambda: swapped.append(True), batch_size=40)  # fmt: skip
        rebuilds.start("clickhouse")
        for _ in range(40):  # the store keeps moving during the rebuild
            writer.step()
        progress = rebuilds.wait("clickhouse", HANG_S)
        assert progress.state == "done", progress.error
        assert swapped == [True] and progress.events > 0 and progress.public()["percent"] == 100.0
        assert runner.wait_for(writer.last_position, HANG_S)
        gate.flush()
        rebuilt = _snapshot(ch, tenant)
    finally:
        stop.set()
        thread.join(HANG_S)
    assert not thread.is_alive()
    # the reference: the same events projected from scratch in a fresh database
    ref = ch.on_database("dl_replay_ref")
    try:
        ref.drop_all()
        ref.ensure_schema()
        events = [e for e in store.read_all(0, limit=100_000) if e.tenant_id == tenant]
        ClickHouseSink(ref, None).apply(events, None, events[-1].position)
        assert rebuilt == _snapshot(ref, tenant)
        assert sum(len(v) for v in rebuilt.values()) > 100
    finally:
        ref.drop_all()


def test_range_replay_to_a_webhook_endpoint(engine: Engine) -> None:
    store = PostgresEventStore(engine)
    hooks = WebhookStore(engine, TEST_BOX)
    positions = [
        _append(store, "product", f"PROD-{i}", "ProductRegistered", product_id=f"PROD-{i}", name="Mug",
                category="k", price_minor=100 * i, currency="USD")  # fmt: skip
        for i in range(1, 6)
    ]
    # created after the events: the relay would never send them; a replay may
    ep = hooks.create_endpoint(T, "https://example.com/hook", "whsec_x", predicates=[
        {"field": "price_minor", "op": "gte", "value": 200}])  # fmt: skip
    done = replay_range_to_endpoint(store, hooks, ep, positions[1], positions[3], replay_id="r1")
    assert (done.scanned, done.matched, done.created) == (3, 3, 3)
    again = replay_range_to_endpoint(store, hooks, ep, positions[0], positions[4], replay_id="r1")
    assert (again.matched, again.created) == (4, 1)  # only PROD-5 is new to replay r1
    rows = hooks.list_deliveries(T, ep.id, 50, None, None)
    assert sorted(d.position for d in rows if d.position) == [*positions[1:4], positions[4]]
    assert {d.kind for d in rows} == {"replay"}
    with engine.connect() as conn:
        raw = conn.execute(text("SELECT body FROM webhook_deliveries ORDER BY id LIMIT 1")).scalar_one()
    body = json.loads(raw)
    assert body["position"] == positions[1] and body["type"] == "ProductRegistered"

"""ServingLoader against a real Kafka broker, Postgres and chdb.

Serving messages are built as Flink builds them (projections.rows.project on the stored events, rows
through dumps_row) and produced out of order across partitions, with duplicates and dead letters.

Broker: the ``kafka_broker`` session fixture of tests/distributed_stack.py (or
``AGENTFLOW_TEST_KAFKA_BOOTSTRAP``, host:port of a running broker, while developing).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from chdb_store import chdb_dsn, chdb_store
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from span_recorder import recording_spans
from sqlalchemy.engine import Engine
from waiting import eventually

from commands.ports import StreamWrite
from connectors.checkpoints import CheckpointStore
from connectors.clickhouse import ClickHouseStore, normalize_row
from connectors.dead_letters import DeadLetterStore
from connectors.event_store import PostgresEventStore
from connectors.serving_loader import ServingLoader
from connectors.tailer import PositionTailer, PostgresTailer
from connectors.tracing import TRACER
from domain.events import NewEvent, RecordedEvent
from projections.rows import TABLES, MemoryLookup, dumps_row, project

pytestmark = pytest.mark.integration

TENANT = "tenant-loader"
SERVING_PARTITIONS = 3
HANG_S = 120.0  # bounds a hang (Kafka, Postgres and chdb on a loaded machine); never a latency


@pytest.fixture(scope="module")
def kafka_bootstrap(kafka_broker: Any) -> str:
    return os.environ.get("AGENTFLOW_TEST_KAFKA_BOOTSTRAP") or str(kafka_broker.bootstrap_servers)


@pytest.fixture()
def clickhouse() -> Iterator[ClickHouseStore]:
    s = chdb_store(f"loader_{uuid.uuid4().hex[:8]}")
    yield s
    s.drop_all()


@pytest.fixture()
def prefix(kafka_bootstrap: str) -> Iterator[str]:
    p = f"t{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    topics = [NewTopic(f"{p}.serving", SERVING_PARTITIONS, 1), NewTopic(f"{p}.deadletter", 2, 1)]
    for f in admin.create_topics(topics).values():
        f.result(timeout=HANG_S)
    yield p
    for f in admin.delete_topics([t.topic for t in topics]).values():
        with contextlib.suppress(Exception):  # best effort
            f.result(timeout=30)


# -- the event log ---------------------------------------------------------------------------------


class Shop:
    """Appends real events to the store, leaving rolled-back gaps in the positions."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.store = PostgresEventStore(engine, notify=False)
        self.versions: dict[tuple[str, str], int] = {}

    def add(self, stream_type: str, stream_id: str, *events: tuple[str, dict[str, Any]]) -> None:
        v = self.versions.get((stream_type, stream_id), 0)
        new = [NewEvent(stream_type, stream_id, et, data) for et, data in events]
        self.store.append(TENANT, [StreamWrite(stream_type, stream_id, v, new)], {"command_id": "c"})
        self.versions[(stream_type, stream_id)] = v + len(new)

    def rolled_back(self) -> None:
        """Takes a position and rolls back: a gap the watermark must step over."""
        with self.engine.connect() as conn:
            conn.begin()
            ev = NewEvent("user", f"USR-gap-{uuid.uuid4().hex[:6]}", "UserRegistered", {"user_id": "x"})
            self.store.append_on(conn, TENANT, [StreamWrite("user", ev.stream_id, 0, [ev])], {})
            conn.rollback()

    def orders(self, start: int, count: int) -> None:
        for n in range(start, start + count):
            pid = f"PROD-{n % 3:03d}"
            uid = f"USR-{n % 2:05d}"
            oid = f"ORD-{n:05d}"
            lines = [{"product_id": pid, "quantity": 1 + n % 2, "unit_price_minor": 1000}]
            total = sum(ln["quantity"] * ln["unit_price_minor"] for ln in lines)
            self.add(
                "order",
                oid,
                (
                    "OrderPlaced",
                    {
                        "order_id": oid,
                        "user_id": uid,
                        "currency": "USD",
                        "channel": "web",
                        "lines": lines,
                        "total_minor": total,
                    },
                ),
            )
            if n % 4 == 1:
                self.rolled_back()
            self.add("order", oid, ("OrderConfirmed", {"order_id": oid}))
            if n % 3 == 0:
                self.add("order", oid, ("OrderShipped", {"order_id": oid}))

    def catalog(self) -> None:
        for i in range(3):
            pid = f"PROD-{i:03d}"
            self.add(
                "product",
                pid,
                (
                    "ProductRegistered",
                    {
                        "product_id": pid,
                        "name": f"P{i}",
                        "category": "books",
                        "price_minor": 1000,
                        "currency": "USD",
                    },
                ),
                ("StockReceived", {"product_id": pid, "quantity": 100}),
            )
        for i in range(2):
            uid = f"USR-{i:05d}"
            self.add(
                "user",
                uid,
                ("UserRegistered", {"user_id": uid, "name": f"U{i}", "email": f"u{i}@x.io", "region": "EU"}),
            )

    def events(self) -> list[RecordedEvent]:
        tailer = PostgresTailer(self.engine, listen=False)
        return sorted(tailer.fetch(None, 100_000).events, key=lambda e: e.position)

    def head(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.exec_driver_sql("SELECT last_value FROM events_position_seq").scalar_one())


# -- what Flink would emit -------------------------------------------------------------------------


def flink_output(
    events: list[RecordedEvent], dead: set[int], lookup: MemoryLookup
) -> list[tuple[str, str, dict[str, Any]]]:
    """(topic suffix, key, value) per event, projecting in position order (Flink's keyed state)."""
    out: list[tuple[str, str, dict[str, Any]]] = []
    for e in events:
        now_ms = int(time.time() * 1000)
        if e.position in dead:
            out.append(
                (
                    "deadletter",
                    e.stream_id,
                    {
                        "position": e.position,
                        "tenant_id": e.tenant_id,
                        "event_id": e.event_id,
                        "event_type": e.event_type,
                        "stage": "validate",
                        "reason": "test: rejected",
                        "record": {"position": e.position, "event_type": e.event_type},
                        "failed_at_ms": now_ms,
                    },
                )
            )
            continue
        changes = project(e, lookup)
        lookup.apply(changes)
        out.append(
            (
                "serving",
                e.stream_id,
                {
                    "position": e.position,
                    "tenant_id": e.tenant_id,
                    "event_id": e.event_id,
                    "event_type": e.event_type,
                    "changes": [{"table": c.table, "row": dumps_row(c.row)} for c in changes],
                    "source_ts_ms": int(e.recorded_at.timestamp() * 1000),
                    "flink_ts_ms": now_ms,
                },
            )
        )
    return out


def produce(bootstrap: str, prefix: str, msgs: list[tuple[str, str, dict[str, Any]]], seed: int) -> None:
    """Per-stream order kept (one partition per key), everything else interleaved at random."""
    rnd = random.Random(seed)
    by_partition: dict[tuple[str, int], list[tuple[str, dict[str, Any]]]] = {}
    for suffix, key, value in msgs:
        n = SERVING_PARTITIONS if suffix == "serving" else 2
        by_partition.setdefault((suffix, sum(key.encode()) % n), []).append((key, value))
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    queues = list(by_partition.items())
    while queues:
        i = rnd.randrange(len(queues))
        (suffix, partition), items = queues[i]
        key, value = items.pop(0)
        producer.produce(
            f"{prefix}.{suffix}", json.dumps(value, default=str).encode(), key.encode(), partition=partition
        )
        if not items:
            queues.pop(i)
    assert producer.flush(30) == 0


def expected_rows(lookup: MemoryLookup) -> dict[str, list[str]]:
    return {
        t: sorted(repr(sorted(normalize_row(t, r).items())) for r in lookup.tables[t].values())
        for t in TABLES
    }


def actual_rows(store: ClickHouseStore) -> dict[str, list[str]]:
    out = {}
    for t in TABLES:
        rows = store.select_rows(t, TENANT)
        for r in rows:
            if t == "sessions":
                r["pages"] = list(r["pages"])
        out[t] = sorted(repr(sorted(r.items())) for r in rows)
    return out


class TailPolls:
    """Counts the loaders' store-tail polls (PositionTailer.fetch_positions): a later poll is the
    positive marker that a loader has taken further turns."""

    def __init__(self) -> None:
        self.count = 0

    def after(self, turns: int) -> None:
        """Return once ``turns`` polls have started (and finished) after this call."""
        target = self.count + turns + 1  # the poll under way may have started before the call
        eventually(lambda: self.count >= target, timeout=HANG_S, what=f"{turns} more tail polls")


@pytest.fixture()
def tail_polls(monkeypatch: pytest.MonkeyPatch) -> TailPolls:
    polls = TailPolls()
    real = PositionTailer.fetch_positions

    def counting(self: PositionTailer, cursor: Any, limit: int = 5000) -> Any:
        batch = real(self, cursor, limit)
        polls.count += 1
        return batch

    monkeypatch.setattr(PositionTailer, "fetch_positions", counting)
    return polls


class LoaderThread:
    def __init__(self, loader: ServingLoader) -> None:
        self.loader = loader
        self.stop = threading.Event()
        self.thread = threading.Thread(target=loader.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def close(self, commit: bool = True) -> None:
        self.loader.commit_on_stop = commit
        self.stop.set()
        self.thread.join(HANG_S)
        assert not self.thread.is_alive()


def test_loader_applies_contiguously_and_survives_a_crash(
    engine: Engine, clickhouse: ClickHouseStore, prefix: str, kafka_bootstrap: str, tail_polls: TailPolls
) -> None:
    shop = Shop(engine)
    shop.catalog()
    shop.orders(1, 12)
    events = shop.events()
    dead = {events[5].position, events[17].position}  # dead-lettered by "Flink"
    held = events[3]  # its serving message arrives last
    lookup = MemoryLookup()
    msgs = flink_output(events, dead, lookup)
    first_wave = [m for m in msgs if m[2]["position"] != held.position]
    # duplicates, as an at-least-once pipeline redelivers them
    dupes = random.Random(1).sample(first_wave, 6)
    watermarks: list[int] = []
    applied_positions: list[int] = []

    def on_applied(evs: Any, wm: int) -> None:
        applied_positions.extend(e.position for e in evs)
        watermarks.append(wm)

    loader = ServingLoader(
        clickhouse,
        engine,
        kafka_bootstrap,
        topic_prefix=prefix,
        group_id=f"{prefix}-g",
        on_applied=on_applied,
        commit_interval=0.0,
    )
    t = LoaderThread(loader)
    try:
        produce(kafka_bootstrap, prefix, first_wave + dupes, seed=2)
        first_head = shop.head()

        def first_wave_seen() -> bool:
            # one status snapshot: every message consumed and every position observed by the tail
            st = loader.status
            return st.messages >= len(first_wave) + len(dupes) and st.tail_watermark >= first_head

        eventually(first_wave_seen, timeout=HANG_S, what=lambda: f"loader status {loader.status}")
        assert loader.watermark == held.position - 1
        tail_polls.after(3)  # several more tail polls: the watermark must stay below the missing position
        assert loader.watermark == held.position - 1
        assert loader.status.last_error is None

        produce(kafka_bootstrap, prefix, [m for m in msgs if m[2]["position"] == held.position], seed=3)
        head = shop.head()
        assert head == first_head
        eventually(lambda: loader.watermark >= head, timeout=HANG_S)
        assert loader.watermark == head  # includes the trailing rolled-back gap, never more
        assert actual_rows(clickhouse) == expected_rows(lookup)
        letters = DeadLetterStore(engine)
        assert letters.count(TENANT) == 2
        assert {d.position for d in letters.list(TENANT, 10)} == dead
        assert watermarks == sorted(watermarks)
        assert set(applied_positions) == {e.position for e in events} - dead
        eventually(lambda: loader.status.committed_watermark == head, timeout=HANG_S)
        assert CheckpointStore(engine).load("serving-loader")[1] == head
        st = loader.status
        assert st.source_to_visible_ms is not None and st.last_apply_ms > 0

        # a second wave is applied but neither checkpointed nor committed, then the loader "crashes"
        loader.commit_interval = 3600.0
        loader._last_commit = time.monotonic()
        shop.orders(100, 6)
        events2 = [e for e in shop.events() if e.position > head]
        dead2 = {events2[2].position}
        msgs2 = flink_output(events2, dead2, lookup)
        produce(kafka_bootstrap, prefix, msgs2 + msgs2[:3], seed=4)
        head2 = shop.head()
        eventually(lambda: loader.watermark >= head2, timeout=HANG_S)
        assert actual_rows(clickhouse) == expected_rows(lookup)
    finally:
        t.close(commit=False)
    assert CheckpointStore(engine).load("serving-loader")[1] == head

    # restart (a new process): redelivered messages are re-applied without double effects, the
    # watermark resumes from the checkpoint and reaches the head again
    watermarks.clear()
    loader2 = ServingLoader(
        clickhouse,
        engine,
        kafka_bootstrap,
        topic_prefix=prefix,
        group_id=f"{prefix}-g",
        on_applied=on_applied,
        commit_interval=0.0,
    )
    t2 = LoaderThread(loader2)
    try:
        eventually(lambda: loader2.watermark >= head2, timeout=HANG_S)
        assert loader2.watermark == head2
        assert min(watermarks) >= head and watermarks == sorted(watermarks)
        assert actual_rows(clickhouse) == expected_rows(lookup)
        assert DeadLetterStore(engine).count(TENANT) == 3
        eventually(lambda: CheckpointStore(engine).load("serving-loader")[1] == head2, timeout=HANG_S)
        # same instance restarted (after an error): the published watermark never moves back
        t2.close(commit=True)
        published: list[int] = []
        real_set = loader2._set

        def recording_set(**changes: Any) -> None:
            if "watermark" in changes:
                published.append(changes["watermark"])
            real_set(**changes)

        loader2._set = recording_set  # type: ignore[method-assign]
        t2 = LoaderThread(loader2)
        tail_polls.after(2)  # restarted (the start publishes a watermark) and took turns after it
        assert published and min(published) == head2
        assert loader2.watermark == head2
    finally:
        t2.close()


def test_latency_per_batch(
    engine: Engine, clickhouse: ClickHouseStore, prefix: str, kafka_bootstrap: str
) -> None:
    """Single events trickling in: each becomes visible, and the read models end equal to the
    projection. Commit-to-visible latency is printed (a benchmark figure, never asserted)."""
    shop = Shop(engine)
    shop.catalog()
    loader = ServingLoader(clickhouse, engine, kafka_bootstrap, topic_prefix=prefix, group_id=f"{prefix}-g")
    t = LoaderThread(loader)
    lookup = MemoryLookup()
    seen = 0
    added: list[float] = []
    try:
        for n in range(1, 21):
            shop.orders(n, 1)
            events = [e for e in shop.events() if e.position > seen]
            seen = events[-1].position
            started = time.perf_counter()
            produce(kafka_bootstrap, prefix, flink_output(events, set(), lookup), seed=n)
            target = shop.head()
            eventually(lambda target=target: loader.watermark >= target, timeout=HANG_S)
            added.append((time.perf_counter() - started) * 1000)
        st = loader.status
        added.sort()
        print(
            f"produce->visible ms p50={added[len(added) // 2]:.1f} max={added[-1]:.1f}; "
            f"loader apply ms={st.last_apply_ms}; flink->consumed ms={st.flink_to_consumed_ms}; "
            f"flink->loaded ms={st.flink_to_loaded_ms}; "
            f"loaded->visible ms={st.loaded_to_visible_ms}"
        )
        assert loader.watermark == shop.head() and st.last_error is None
        assert actual_rows(clickhouse) == expected_rows(lookup)
    finally:
        t.close()


def test_the_loaders_insert_continues_the_commands_trace(
    engine: Engine, clickhouse: ClickHouseStore, prefix: str, kafka_bootstrap: str
) -> None:
    """Distributed, the event's traceparent rides through Flink in the events row: the loader's insert
    of each event is a span in the trace of the append that wrote it."""
    with recording_spans() as exporter:
        shop = Shop(engine)
        with TRACER.start_as_current_span("command under test") as command:
            shop.catalog()
            shop.orders(1, 2)
        events = shop.events()
        appends = {s.context.span_id for s in exporter.get_finished_spans() if s.name == "event_store.append"}
        assert appends
        group = f"{prefix}-g"
        loader = ServingLoader(clickhouse, engine, kafka_bootstrap, topic_prefix=prefix, group_id=group)
        t = LoaderThread(loader)
        try:
            produce(kafka_bootstrap, prefix, flink_output(events, set(), MemoryLookup()), seed=7)
            eventually(lambda: loader.watermark >= shop.head(), timeout=HANG_S)
        finally:
            t.close()
        inserts = [s for s in exporter.get_finished_spans() if s.name == "loader.apply"]
    assert sorted(s.attributes["agentflow.position"] for s in inserts if s.attributes) == sorted(
        e.position for e in events
    )
    for s in inserts:
        assert s.parent is not None and s.parent.span_id in appends
        assert s.context.trace_id == command.get_span_context().trace_id


def test_runtime_distributed_mode(
    pg_url: str, engine: Engine, prefix: str, kafka_bootstrap: str, tmp_path: Any
) -> None:
    """The API runtime without embedded projectors: watermark, waiters, cache and health come from
    the loader."""
    import asyncio

    from services.api.routes.health import health_report
    from services.bootstrap import build
    from services.config import Settings

    settings = Settings(
        data_dir=tmp_path, clickhouse_dsn=chdb_dsn(), iceberg_enabled=False, deployment="distributed",
        kafka_bootstrap=kafka_bootstrap, topic_prefix=prefix, legacy_sources_enabled=False,
    )
    container = build(settings, pg_url)
    runtime = container.runtime
    runtime.clickhouse.drop_all()
    invalidated: list[int] = []
    real_invalidate = runtime.cache.invalidate

    def spy(evs: Any) -> None:
        evs = list(evs)
        assert all(runtime.watermark < e.position for e in evs)  # before the watermark moves
        invalidated.extend(e.position for e in evs)
        real_invalidate(evs)

    runtime.cache.invalidate = spy  # type: ignore[method-assign]

    async def scenario() -> None:
        runtime.bind_loop(asyncio.get_running_loop())
        await asyncio.to_thread(runtime.start)
        try:
            assert runtime.lake_runner is None and isinstance(runtime.serving_runner, ServingLoader)
            shop = Shop(engine)
            shop.catalog()
            events = shop.events()
            waiter = asyncio.create_task(runtime.wait_for_position(events[-1].position, HANG_S))
            # the watermark it saw when it returned: it must not return before the events are loaded
            seen_at_return: list[int] = []
            waiter.add_done_callback(lambda _: seen_at_return.append(runtime.watermark))
            await asyncio.sleep(0)  # a yield: the waiter starts waiting
            assert not waiter.done()  # nothing is produced yet: the loader cannot have the events
            await asyncio.to_thread(
                produce, kafka_bootstrap, prefix, flink_output(events, set(), MemoryLookup()), 5
            )
            assert await waiter
            assert seen_at_return and seen_at_return[0] >= events[-1].position
            assert runtime.watermark >= events[-1].position
            assert sorted(invalidated) == [e.position for e in events]
            # caught up: the loader's tail has seen every position and all are applied
            await asyncio.to_thread(
                eventually, lambda: runtime.freshness_seconds() == 0.0, HANG_S, 0.05, "caught up"
            )
            report = health_report(runtime)
            names = {c["name"]: c for c in report["components"]}
            assert names["projector"]["status"] == "healthy"
            assert names["projector"]["metrics"]["watermark"] == runtime.watermark
            assert names["freshness"]["metrics"]["as_of_position"] == runtime.watermark
        finally:
            await asyncio.to_thread(runtime.stop)

    try:
        asyncio.run(scenario())
    finally:
        runtime.clickhouse.drop_all()
        container.close()


def test_an_undecodable_serving_message_is_dead_lettered_whole_and_passed(
    engine: Engine, clickhouse: ClickHouseStore, prefix: str, kafka_bootstrap: str
) -> None:
    """A message with a change the loader cannot decode applies none of its rows, is stored as a dead
    letter with its position, and the watermark moves past it."""
    shop = Shop(engine)
    shop.catalog()
    shop.orders(1, 3)
    events = shop.events()
    msgs = flink_output(events, set(), MemoryLookup())
    broken = next(m for m in msgs if m[2]["event_type"] == "OrderPlaced")
    broken[2]["changes"].append({"table": "no_such_table", "row": {}})  # after its good rows
    loader = ServingLoader(clickhouse, engine, kafka_bootstrap, topic_prefix=prefix, group_id=f"{prefix}-g")
    t = LoaderThread(loader)
    try:
        produce(kafka_bootstrap, prefix, msgs, seed=3)
        eventually(lambda: loader.watermark >= shop.head(), timeout=HANG_S)
    finally:
        t.close()
    placed = next(e for e in events if e.position == broken[2]["position"])
    assert clickhouse.get_row("events", (placed.tenant_id, placed.position)) is None  # none of its rows
    assert clickhouse.get_row("order_lines", (placed.tenant_id, placed.stream_id, 1)) is None
    letters = [d for d in DeadLetterStore(engine).list(None) if d.stage == "load"]
    assert [d.position for d in letters] == [placed.position]

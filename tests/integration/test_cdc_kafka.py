"""Debezium (Kafka Connect, distributed mode) captures the event store into ``<prefix>.events``:
snapshot of existing rows, then streaming; the plan's CDC format, key = stream_id, per-stream order."""

from __future__ import annotations

import json
import statistics
import time
import uuid
from collections import defaultdict
from datetime import datetime
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Message
from distributed_stack import event_capture, unique_prefix
from sqlalchemy import text
from sqlalchemy.engine import Engine

from commands.ports import StreamWrite
from connectors.event_store import PostgresEventStore
from domain.events import NewEvent
from services.distributed.kafka_broker import KafkaBroker
from services.distributed.kafka_connect import KafkaConnect

pytestmark = pytest.mark.integration

T = "tenant-cdc"
FIELDS = {
    "position", "tenant_id", "stream_type", "stream_id", "stream_version", "event_id", "event_type",
    "schema_version", "data", "metadata", "occurred_at", "recorded_at", "__source_ts_ms", "__lsn",
}


def write(stream_id: str, expected: int, count: int = 1) -> StreamWrite:
    events = [NewEvent("order", stream_id, "OrderConfirmed", {"order_id": stream_id, "n": expected + i + 1,
                                                               "amount": "12.50", "note": "é ü \"q\""})
              for i in range(count)]
    return StreamWrite("order", stream_id, expected, events)


def consumer(broker: KafkaBroker, topic: str) -> Consumer:
    c = Consumer({
        "bootstrap.servers": broker.bootstrap_servers,
        "group.id": f"test-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 10,
        "topic.metadata.refresh.interval.ms": 500,
    })
    c.subscribe([topic])
    return c


def poll_until(
    c: Consumer, want: int, timeout: float, out: list[tuple[Message, float]], connect: KafkaConnect
) -> None:
    """Append (message, arrival time.time()) to ``out`` until it holds ``want`` messages."""
    deadline = time.monotonic() + timeout
    while len(out) < want:
        if time.monotonic() > deadline:
            status = {n: connect.status(n) for n in connect.connectors()}
            raise AssertionError(f"only {len(out)} of {want} CDC messages within {timeout}s: {status}")
        m = c.poll(0.05)
        if m is None:
            continue
        err = m.error()
        if err is not None:
            if err.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._PARTITION_EOF):
                continue  # the topic is created by Connect with the first record
            raise AssertionError(str(err))
        out.append((m, time.time()))


def db_rows(engine: Engine) -> dict[int, dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT position, tenant_id, stream_type, stream_id, stream_version, "
            "event_id::text AS event_id, event_type, schema_version, data, metadata, occurred_at, "
            "recorded_at "
            "FROM events ORDER BY position"
        )).mappings().all()
    return {r["position"]: dict(r) for r in rows}


def parse_ts(v: Any) -> datetime:
    assert isinstance(v, str), v
    return datetime.fromisoformat(v.replace("Z", "+00:00"))


def test_snapshot_then_stream_into_kafka(
    engine: Engine, pg_url: str, kafka_broker: KafkaBroker, kafka_connect: KafkaConnect
) -> None:
    store = PostgresEventStore(engine)
    # rows that exist before the connector is registered: captured by the initial snapshot
    for s in ("ORD-S1", "ORD-S2", "ORD-S3"):
        store.append(T, [write(s, 0, 2)], {"correlation_id": "pre"})
    pre = len(db_rows(engine))

    prefix = unique_prefix("cdc")
    received: list[tuple[Message, float]] = []
    t_register = time.monotonic()
    with event_capture(kafka_connect, pg_url, topic_prefix=prefix) as topic:
        c = consumer(kafka_broker, topic)
        try:
            poll_until(c, pre, 120, received, kafka_connect)
            first_record_s = time.monotonic() - t_register

            # streaming: interleaved streams, several events per append, several streams per append
            v = {s: 2 for s in ("ORD-S1", "ORD-S2", "ORD-S3")}
            for i in range(6):
                s1, s2 = f"ORD-S{i % 3 + 1}", f"ORD-N{i % 2}"
                n2 = (i // 2)
                store.append(T, [write(s1, v[s1], 2), write(s2, n2, 1)], {"correlation_id": f"c{i}"})
                v[s1] += 2
            store.append("tenant-other", [write("ORD-S1", 0, 1)], {})
            total = len(db_rows(engine))
            poll_until(c, total, 60, received, kafka_connect)

            # insert -> Kafka latency, one event at a time
            lat_ms: list[float] = []
            # per event, ms: commit -> __source_ts_ms / -> Kafka record timestamp / -> consumer
            stages: list[str] = []
            for i in range(10):
                before = len(received)
                t0 = time.time()
                store.append(T, [write("ORD-LAT", i, 1)], {})
                t_commit = time.time()
                poll_until(c, before + 1, 30, received, kafka_connect)
                lat_ms.append((received[-1][1] - t_commit) * 1000)
                m, arrived = received[-1]
                src = json.loads(m.value())["__source_ts_ms"]
                ts = m.timestamp()[1]
                stages.append(f"{src - t_commit * 1000:.0f}/{ts - src}/{arrived * 1000 - ts:.0f}")
                assert received[-1][1] >= t0
            total = len(db_rows(engine))
            # nothing extra (no duplicates, no heartbeats) shows up on the events topic
            end = time.monotonic() + 1.0
            while time.monotonic() < end:
                m = c.poll(0.1)
                if m is not None and m.error() is None:
                    received.append((m, time.time()))
        finally:
            c.close()

    rows = db_rows(engine)
    assert len(received) == len(rows) == total
    by_partition: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for m, _ in received:
        value = json.loads(m.value())
        assert set(value) == FIELDS, sorted(value)
        key = m.key().decode()
        assert key == value["stream_id"]
        row = rows[value["position"]]
        for f in ("position", "tenant_id", "stream_type", "stream_id", "stream_version", "event_id",
                  "event_type", "schema_version"):
            assert value[f] == row[f], (f, value[f], row[f])
        assert isinstance(value["data"], str) and json.loads(value["data"]) == row["data"]
        assert isinstance(value["metadata"], str) and json.loads(value["metadata"]) == row["metadata"]
        assert parse_ts(value["occurred_at"]) == row["occurred_at"]
        assert parse_ts(value["recorded_at"]) == row["recorded_at"]
        assert isinstance(value["__source_ts_ms"], int) and isinstance(value["__lsn"], int)
        by_partition[m.partition()].append(value)
    assert sorted(rows) == sorted(json.loads(m.value())["position"] for m, _ in received)

    # per stream: one partition, versions 1..n in order
    stream_partition: dict[tuple[str, str], int] = {}
    for part, values in by_partition.items():
        last: dict[tuple[str, str], int] = {}
        for value in values:
            k = (value["tenant_id"], value["stream_id"])
            assert stream_partition.setdefault(k, part) == part
            assert value["stream_version"] == last.get(k, 0) + 1, value
            last[k] = value["stream_version"]
    assert len(by_partition) > 1  # keys spread over the 3 partitions

    # the slot and publication are gone
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM pg_replication_slots")).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM pg_publication")).scalar() == 0

    print(
        f"\nCDC timings: broker start {kafka_broker.start_seconds:.1f}s, connect start "
        f"{kafka_connect.start_seconds:.1f}s, register->snapshot complete {first_record_s:.2f}s, "
        f"insert->kafka p50 {statistics.median(lat_ms):.1f} ms max {max(lat_ms):.1f} ms "
        f"({', '.join(f'{x:.0f}' for x in lat_ms)}); stages {' '.join(stages)}\n"
        f"sample value: {received[-1][0].value().decode()}"
    )

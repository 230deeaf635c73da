"""Debezium (Kafka Connect, distributed mode) captures the event store into ``<prefix>.events``:
snapshot of existing rows, then streaming; the plan's CDC format, key = stream_id, per-stream order."""

from __future__ import annotations

import json
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
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
    c: Consumer, done: Callable[[list[Message]], bool], timeout: float, out: list[Message],
    connect: KafkaConnect, what: str,
) -> None:
    """Append the consumer's messages to ``out`` until ``done(out)`` (a consumer loop; ``timeout`` bounds a
    hang on a loaded machine, it is no latency requirement)."""
    deadline = time.monotonic() + timeout
    while not done(out):
        if time.monotonic() > deadline:
            status = {n: connect.status(n) for n in connect.connectors()}
            raise AssertionError(f"{what}: not within {timeout}s ({len(out)} CDC messages): {status}")
        m = c.poll(0.05)
        if m is None:
            continue
        err = m.error()
        if err is not None:
            if err.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._PARTITION_EOF):
                continue  # the topic is created by Connect with the first record
            raise AssertionError(str(err))
        out.append(m)


def count(n: int) -> Callable[[list[Message]], bool]:
    return lambda out: len(out) >= n


def stream_of(m: Message) -> str | None:
    value = m.value()
    return json.loads(value).get("stream_id") if value else None


def has_stream(stream_id: str) -> Callable[[list[Message]], bool]:
    return lambda out: any(stream_of(m) == stream_id for m in out)


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
    received: list[Message] = []
    with event_capture(kafka_connect, pg_url, topic_prefix=prefix) as topic:
        c = consumer(kafka_broker, topic)
        try:
            poll_until(c, count(pre), 120, received, kafka_connect, "the snapshot")

            # streaming: interleaved streams, several events per append, several streams per append
            v = {s: 2 for s in ("ORD-S1", "ORD-S2", "ORD-S3")}
            for i in range(6):
                s1, s2 = f"ORD-S{i % 3 + 1}", f"ORD-N{i % 2}"
                n2 = (i // 2)
                store.append(T, [write(s1, v[s1], 2), write(s2, n2, 1)], {"correlation_id": f"c{i}"})
                v[s1] += 2
            store.append("tenant-other", [write("ORD-S1", 0, 1)], {})
            total = len(db_rows(engine))
            poll_until(c, count(total), 120, received, kafka_connect, "the streamed events")

            # one event at a time: each append is delivered on its own
            for i in range(10):
                before = len(received)
                store.append(T, [write("ORD-LAT", i, 1)], {})
                poll_until(c, count(before + 1), 120, received, kafka_connect, f"ORD-LAT version {i + 1}")
                value = json.loads(received[-1].value())
                assert (value["stream_id"], value["stream_version"]) == ("ORD-LAT", i + 1), value

            # nothing extra (no duplicates, no heartbeats) shows up on the events topic: a marker event
            # appended after everything else is read on each of the topic's partitions, so whatever was
            # written to a partition before its marker has been read
            partitions = set(c.list_topics(topic, timeout=30).topics[topic].partitions)
            marked: set[int] = set()
            for n in range(64):  # a new stream lands on a given one of the 3 partitions with p = 1/3
                marker = f"ORD-MARK{n}"
                store.append(T, [write(marker, 0, 1)], {"correlation_id": "marker"})
                poll_until(c, has_stream(marker), 120, received, kafka_connect, f"marker {marker}")
                marked |= {m.partition() for m in received if stream_of(m) == marker}
                if marked == partitions:
                    break
            assert marked == partitions, (marked, partitions)
        finally:
            c.close()

    rows = db_rows(engine)
    assert len(received) == len(rows)
    by_partition: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for m in received:
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
    assert sorted(rows) == sorted(json.loads(m.value())["position"] for m in received)

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


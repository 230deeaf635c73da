"""Replaying a range of positions to a Kafka topic: the tenant's events, in the CDC format, once each."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from event_log import order_write
from sqlalchemy.engine import Engine
from waiting import eventually

from connectors.event_store import PostgresEventStore
from connectors.kafka_replay import replay_range_to_kafka
from projections.flink.pipeline import decode

pytestmark = pytest.mark.integration


MARKER = b"end-of-test-marker"


def _consume_all(bootstrap: str, topic: str) -> list[Any]:
    """Every message on ``topic`` produced so far: a marker is produced to each of its partitions after
    them and read back, so the messages before it on every partition have been read (no waiting for
    "nothing more")."""
    producer = Producer({"bootstrap.servers": bootstrap})
    partitions = producer.list_topics(topic, timeout=30).topics[topic].partitions
    assert partitions, f"{topic} has no partitions"
    for partition in partitions:
        producer.produce(topic, key=MARKER, value=MARKER, partition=partition)
    assert producer.flush(30) == 0, "markers not delivered"
    c = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest"}
    )
    c.subscribe([topic])
    out: list[Any] = []
    marked: set[int] = set()

    def all_marked() -> bool:
        for m in c.consume(500, 0.5):
            if m.error() is not None:
                continue
            if m.key() == MARKER:
                marked.add(m.partition())
            else:
                out.append(m)
        return marked == set(partitions)

    try:
        eventually(all_marked, 120, interval=0.0,
                   what=lambda: f"the markers of partitions {sorted(partitions)} (seen: {sorted(marked)})")
    finally:
        c.close()
    return out


def test_range_replay_produces_the_tenants_events_in_cdc_format(engine: Engine, kafka_broker: Any) -> None:
    store = PostgresEventStore(engine)
    for i in range(1, 6):
        store.append("t-a", [order_write(f"ORD-{i}", 0, 2)], {"command_id": f"c{i}"})
        store.append("t-b", [order_write(f"ORD-B{i}", 0)], {})
    events = [e for e in store.read_all(0, limit=1000) if e.tenant_id == "t-a"]
    first, last = events[2].position, events[7].position
    wanted = [e for e in events if first <= e.position <= last]
    topic = f"replay-{uuid.uuid4().hex[:8]}"
    result = replay_range_to_kafka(store, kafka_broker.bootstrap_servers, topic, "t-a", first, last)
    assert result["produced"] == len(wanted) == 6
    got = _consume_all(kafka_broker.bootstrap_servers, topic)
    assert len(got) == len(wanted)  # nothing of tenant t-b, nothing outside the range
    decoded = sorted((decode(m.value()).event for m in got), key=lambda e: e.position)
    assert [(e.position, e.event_id, e.stream_id, e.data) for e in decoded] == [
        (e.position, str(e.event_id), e.stream_id, e.data) for e in wanted
    ]
    assert all(m.key().decode() == json.loads(m.value())["stream_id"] for m in got)
    assert {dict(m.headers())["replay-id"].decode() for m in got} == {result["replay_id"]}

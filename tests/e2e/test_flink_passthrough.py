"""The distributed benchmark's Flink anchor (bench/passthrough_anchor.py) forwards every CDC record of
the topic, as it came, keyed by its stream id, and reports when it has forwarded them all."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from distributed_stack import unique_prefix
from waiting import eventually

from bench.passthrough_anchor import measure_passthrough
from services.distributed.kafka_broker import KafkaBroker

pytestmark = pytest.mark.timeout(900)


def test_passthrough_forwards_every_record_keyed_by_stream(kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    prefix = unique_prefix("pass")
    bootstrap = kafka_broker.bootstrap_servers
    records = {
        json.dumps({"position": i, "stream_id": f"SES-{uuid.uuid4().hex[:8]}"}, separators=(",", ":"))
        for i in range(1, 301)
    }
    producer = Producer({"bootstrap.servers": bootstrap})
    for value in records:
        producer.produce(f"{prefix}.events", value.encode())
    assert producer.flush(30) == 0

    result = measure_passthrough(tmp_path / "passthrough", bootstrap, prefix, timeout=300, say=lambda _: None)

    assert result["records"] == len(records)
    assert result["complete"] and result["forwarded"] == len(records)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{prefix}",
                         "auto.offset.reset": "earliest"})  # fmt: skip
    consumer.subscribe([f"{prefix}.passthrough"])
    seen: dict[str, str] = {}

    def all_read() -> bool:
        for m in consumer.consume(num_messages=500, timeout=0.5):
            assert m.error() is None
            seen[(m.value() or b"").decode()] = (m.key() or b"").decode()
        return len(seen) >= len(records)

    try:
        eventually(all_read, timeout=120, what=lambda: f"{len(seen)} of {len(records)} read back")
    finally:
        consumer.close()
    assert set(seen) == records
    assert all(key == json.loads(value)["stream_id"] for value, key in seen.items())

"""Replaying a range of the event store to a Kafka topic (``POST /v1/admin/replay/kafka``): the tenant's
events in the CDC format Debezium's topic carries, keyed by stream id, produced and acknowledged."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from domain.events import RecordedEvent
from readmodels.ports import EventLog


def cdc_record(e: RecordedEvent) -> dict[str, Any]:
    """An event as Debezium's CDC topic carries it (docs/distributed.md), so any consumer of the CDC
    format -- projections.flink.pipeline.decode among them -- reads replayed events unchanged."""
    return {
        "position": e.position, "tenant_id": e.tenant_id, "stream_type": e.stream_type,
        "stream_id": e.stream_id, "stream_version": e.stream_version, "event_id": str(e.event_id),
        "event_type": e.event_type, "schema_version": e.schema_version,
        "data": json.dumps(e.data, sort_keys=True, default=str),
        "metadata": json.dumps(e.metadata, sort_keys=True, default=str),
        "occurred_at": e.occurred_at.isoformat().replace("+00:00", "Z"),
        "recorded_at": e.recorded_at.isoformat().replace("+00:00", "Z"),
    }  # fmt: skip


def replay_range_to_kafka(
    store: EventLog,
    bootstrap: str,
    topic: str,
    tenant_id: str,
    from_position: int,
    to_position: int,
    batch: int = 1000,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Produce the tenant's events with ``from_position <= position <= to_position`` to ``topic`` in
    the CDC format, keyed by stream id (per-stream order holds), with a ``replay-id`` header; waits
    until Kafka acknowledged every record. A consumer dedups by event id as it does for CDC."""
    from confluent_kafka import Producer

    from connectors.kafka_logging import kafka_client_logging

    rid = uuid.uuid4().hex
    producer = Producer({
        "bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5,
        **kafka_client_logging("kafka-replay"),
    })
    failures: list[str] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    after, produced = from_position - 1, 0
    while after < to_position:
        events = store.read_all(after, limit=batch, tenant_id=tenant_id, max_position=to_position)
        if not events:
            break
        for e in events:
            producer.produce(
                topic, key=e.stream_id, value=json.dumps(cdc_record(e), separators=(",", ":")),
                headers={"replay-id": rid}, on_delivery=delivered,
            )  # fmt: skip
            producer.poll(0)
        produced += len(events)
        after = events[-1].position
        if on_progress is not None:
            on_progress(after, produced)
    if producer.flush(30) > 0 or failures:
        raise RuntimeError(f"replay to {topic} incomplete: {failures[:3] or 'flush timed out'}")
    return {"replay_id": rid, "topic": topic, "from_position": from_position,
            "to_position": to_position, "produced": produced}  # fmt: skip


class NoKafka(Exception):
    """This process is not connected to Kafka (the embedded deployment)."""


class InvalidReplay(ValueError):
    """A refused range or topic (HTTP 422); ``code`` is ``invalid_range`` or ``reserved_topic``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class KafkaRangeReplay:
    """The replay with its rules: a valid range, and never to one of the pipeline's own topics (the
    default topic is ``<prefix>.replay``). ``bootstrap`` None: no Kafka here."""

    store: EventLog
    bootstrap: str | None
    topic_prefix: str

    def replay(
        self, tenant_id: str, from_position: Any, to_position: Any, topic: str | None = None
    ) -> dict[str, Any]:
        if not self.bootstrap:
            raise NoKafka("this process is not connected to Kafka (embedded deployment)")
        try:
            first, last = int(from_position), int(to_position)
        except (TypeError, ValueError) as exc:
            raise InvalidReplay(
                "invalid_range", "from_position and to_position are required integers"
            ) from exc
        if first < 1 or last < first:
            raise InvalidReplay("invalid_range", "need 1 <= from_position <= to_position")
        prefix = self.topic_prefix
        target = str(topic or f"{prefix}.replay")
        pipeline = {f"{prefix}.{t}" for t in ("events", "serving", "deadletter")}
        if target in pipeline or target.startswith("__") or target.startswith(f"{prefix}.connect"):
            raise InvalidReplay(
                "reserved_topic", f"{target} is a pipeline topic; replay to a consumer's own topic"
            )
        return replay_range_to_kafka(self.store, self.bootstrap, target, tenant_id, first, last)

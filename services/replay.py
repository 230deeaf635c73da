"""Dead-letter replay and event-range replay to a webhook endpoint.

Dead-letter replay (``POST /v1/deadletter/{id}/replay``)
--------------------------------------------------------
The event store is append-only and the rejected event stays in it as history. A replay appends a
NEW event to the store -- same tenant, stream and event type, the current schema version, the
original data or the operator's correction -- at the head of the same stream (next stream version,
optimistic check, retried on a conflict). Its metadata carries ``replay_of`` (dead letter id,
pipeline, stage, original event id, position and occurred_at). Because it is an ordinary event the
deployment's normal pipeline projects it: the embedded projector tails it, or Debezium -> Kafka ->
Flink -> the serving loader in the distributed deployment. A dead letter therefore re-enters the
pipeline that rejected it, and the corrected event shows up in every read model; the bad event
keeps being skipped by every pipeline (it is still invalid).

The correction is validated (domain.validation.event_problems) before anything is written: still
invalid -> ReplayRejected (HTTP 422) and the status stays ``failed``. Statuses: ``failed`` ->
``replay_pending`` (claimed) -> append -> ``replayed`` (with the new position and event id). The
append carries the idempotency key ``agentflow\\ndeadletter-replay:<id>`` (a newline cannot travel
in an ``Idempotency-Key`` header, so no client can take it): replaying twice -- concurrently, or
after a crash between the append and the status update -- appends once; the second replay finds the
first one's event and reports it. A failed append puts the dead letter back to ``failed``.

Known limits: the correction replaces ``data`` only (not the stream or type); the new event's
``occurred_at`` is the replay time (the original one is in ``metadata.replay_of.occurred_at``), so a
windowed metric counts it at replay time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.engine import Engine

from commands.ports import IdempotencyRecord, IdempotencyReplay, StreamWrite, VersionConflict
from connectors.dead_letters import (
    DISMISSED,
    FAILED,
    REPLAY_PENDING,
    REPLAYED,
    DeadLetter,
    DeadLetterStore,
    InvalidTransition,
)
from connectors.event_store import EVENT_COLUMNS, PostgresEventStore, row_to_event
from connectors.legacy.ingest import PIPELINE as CDC_PIPELINE
from connectors.webhook_store import Endpoint, WebhookStore, event_body
from domain.events import EVENT_TYPES, NewEvent, RecordedEvent
from domain.validation import event_problems

log = logging.getLogger(__name__)

IDEMPOTENCY_PREFIX = "agentflow\ndeadletter-replay:"
MAX_VERSION_RETRIES = 8


class DeadLetterNotFound(Exception):
    pass


class ReplayRejected(Exception):
    """The event to replay is still invalid (or cannot be rebuilt); nothing was written."""

    def __init__(self, message: str, problems: list[str]) -> None:
        super().__init__(message)
        self.problems = problems


class ReplayConflict(Exception):
    """The dead letter's status forbids the operation (dismissed, or replayed with other data)."""

    def __init__(self, message: str, status: str | None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ReplayOutcome:
    letter: DeadLetter
    appended: bool  # False when an earlier replay had already appended the event
    position: int
    event_id: str | None


def idempotency_key(letter_id: int) -> str:
    return f"{IDEMPOTENCY_PREFIX}{letter_id}"


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


CdcReplay = Callable[[DeadLetter, "dict[str, Any] | None"], ReplayOutcome]


class DeadLetterReplayer:
    def __init__(
        self, engine: Engine, store: PostgresEventStore, letters: DeadLetterStore,
        cdc: CdcReplay | None = None,
    ) -> None:
        self.engine = engine
        self.store = store
        self.letters = letters
        # legacy CDC letters (pipeline ``cdc``) hold a canonical change record, not an event: they are
        # re-translated by the legacy sources (services/legacy_sources.py)
        self.cdc = cdc

    # -- reads ----------------------------------------------------------------------------------
    def original_event(self, letter: DeadLetter) -> RecordedEvent | None:
        """The rejected event as stored (by event id, else by position), in the letter's tenant."""
        clauses: list[str] = []
        params: dict[str, Any] = {"t": letter.tenant_id}
        try:
            params["id"] = str(uuid.UUID(str(letter.event_id)))
            clauses.append("event_id = %(id)s::uuid")
        except ValueError:
            if letter.position is None:
                return None
            params["p"] = letter.position
            clauses.append("position = %(p)s")
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = %(t)s AND {clauses[0]}"
        with self.engine.connect() as conn:
            row = conn.exec_driver_sql(sql, params).first()
        return row_to_event(row) if row is not None else None

    def _replayed_event(self, tenant_id: str, original: RecordedEvent, letter_id: int) -> tuple[int, str]:
        """The event an earlier replay of ``letter_id`` appended (its stream, newest first)."""
        with self.engine.connect() as conn:
            row = conn.exec_driver_sql(
                "SELECT position, event_id::text FROM events WHERE tenant_id = %(t)s "
                "AND stream_type = %(st)s AND stream_id = %(sid)s "
                "AND metadata->'replay_of'->>'dead_letter_id' = %(dl)s ORDER BY stream_version DESC LIMIT 1",
                {"t": tenant_id, "st": original.stream_type, "sid": original.stream_id, "dl": str(letter_id)},
            ).first()
        if row is None:  # pragma: no cover - the idempotency key and the event commit together
            raise RuntimeError(f"dead letter {letter_id}: replay key used but no replayed event found")
        return int(row[0]), str(row[1])

    def _event_id_at(self, position: int) -> str | None:
        with self.engine.connect() as conn:
            value = conn.exec_driver_sql(
                "SELECT event_id::text FROM events WHERE position = %(p)s", {"p": position}
            ).scalar()
        return None if value is None else str(value)

    # -- replay ---------------------------------------------------------------------------------
    def prepare(self, letter: DeadLetter, corrected: dict[str, Any] | None) -> tuple[RecordedEvent, NewEvent]:
        """The event to append, validated; raises ReplayRejected (nothing written, status unchanged)."""
        original = self.original_event(letter)
        if original is None:
            raise ReplayRejected(
                f"dead letter {letter.id} has no stored event to replay (a record that never parsed); "
                "dismiss it instead",
                ["no stored event"],
            )
        data = corrected if corrected is not None else original.data
        spec = EVENT_TYPES.get(original.event_type)
        version = spec[1] if spec is not None else original.schema_version
        problems = event_problems(
            original.event_type, original.stream_type, original.stream_id, version, data
        )
        if problems:
            raise ReplayRejected(
                f"the {'corrected' if corrected is not None else 'original'} event is still invalid: "
                + "; ".join(problems),
                problems,
            )
        new = NewEvent(original.stream_type, original.stream_id, original.event_type, data, version)
        return original, new

    def replay(
        self,
        tenant_id: str,
        letter_id: int,
        corrected: dict[str, Any] | None = None,
        correlation_id: str | None = None,
        actor: str | None = None,
    ) -> ReplayOutcome:
        letter = self.letters.get(tenant_id, letter_id)
        if letter is None:
            raise DeadLetterNotFound(f"dead letter {letter_id} not found")
        if letter.status == DISMISSED:
            raise ReplayConflict(f"dead letter {letter_id} was dismissed", letter.status)
        if letter.pipeline == CDC_PIPELINE:
            if letter.status == REPLAYED:
                return ReplayOutcome(letter, False, letter.replay_position or 0, letter.replay_event_id)
            if self.cdc is None:
                raise ReplayRejected("legacy CDC dead letters replay where legacy sources run",
                                     ["legacy sources are off in this process"])
            return self.cdc(letter, corrected)
        if letter.status == REPLAYED:
            if corrected is not None and _digest(corrected) != _digest(letter.corrected_data):
                raise ReplayConflict(
                    f"dead letter {letter_id} was already replayed (position {letter.replay_position}) "
                    "with other data",
                    letter.status,
                )
            assert letter.replay_position is not None
            return ReplayOutcome(letter, False, letter.replay_position, letter.replay_event_id)
        original, event = self.prepare(letter, corrected)
        try:
            self.letters.transition(letter_id, REPLAY_PENDING, tenant_id, corrected_data=event.data)
        except InvalidTransition as exc:
            # replayed or dismissed concurrently: answer as a repeated request would
            if exc.current == REPLAYED:
                return self.replay(tenant_id, letter_id, corrected, correlation_id, actor)
            raise ReplayConflict(str(exc), exc.current) from exc
        metadata = {
            "command": "deadletter.replay",
            "command_id": str(uuid.uuid4()),
            "correlation_id": correlation_id or str(uuid.uuid4()),
            "actor": actor or "deadletter-replay",
            "replay_of": {
                "dead_letter_id": str(letter_id), "pipeline": letter.pipeline, "stage": letter.stage,
                "event_id": str(original.event_id), "position": original.position,
                "occurred_at": original.occurred_at.isoformat(), "corrected": corrected is not None,
            },
        }  # fmt: skip
        claim = IdempotencyRecord(idempotency_key(letter_id), _digest(event.data), 200,
                                  {"dead_letter_id": letter_id})  # fmt: skip
        try:
            position, event_id, appended = self._append(
                tenant_id, original, event, metadata, claim, letter_id
            )
        except Exception as exc:
            log.exception("replay of dead letter %s failed", letter_id)
            with contextlib.suppress(InvalidTransition):  # a concurrent replay finished it
                self.letters.transition(letter_id, FAILED, tenant_id, note=f"replay failed: {exc}")
            raise
        try:
            done = self.letters.transition(
                letter_id, REPLAYED, tenant_id, replay_position=position, replay_event_id=event_id
            )
        except InvalidTransition:  # a concurrent replay of the same letter recorded it first
            done = self.letters.get(tenant_id, letter_id) or letter
        return ReplayOutcome(done, appended, position, event_id)

    def _append(
        self,
        tenant_id: str,
        original: RecordedEvent,
        event: NewEvent,
        metadata: dict[str, Any],
        claim: IdempotencyRecord,
        letter_id: int,
    ) -> tuple[int, str | None, bool]:
        for _ in range(MAX_VERSION_RETRIES):
            head = self.store.stream_version(tenant_id, event.stream_type, event.stream_id)
            write = StreamWrite(event.stream_type, event.stream_id, head, [event])
            try:
                result = self.store.append(tenant_id, [write], metadata, claim)
            except VersionConflict:
                continue  # a command appended to the stream meanwhile: go again at the new head
            except IdempotencyReplay:
                position, event_id = self._replayed_event(tenant_id, original, letter_id)
                return position, event_id, False
            return result.last_position, self._event_id_at(result.last_position), True
        raise RuntimeError(f"stream {event.stream_type}/{event.stream_id} kept moving; replay not appended")

    def dismiss(self, tenant_id: str, letter_id: int, note: str | None = None) -> DeadLetter:
        """failed -> dismissed (repeating a dismissal answers the dismissed letter)."""
        try:
            return self.letters.transition(letter_id, DISMISSED, tenant_id, note=note)
        except InvalidTransition as exc:
            if exc.current is None:
                raise DeadLetterNotFound(f"dead letter {letter_id} not found") from exc
            if exc.current == DISMISSED:
                letter = self.letters.get(tenant_id, letter_id)
                assert letter is not None
                return letter
            raise ReplayConflict(str(exc), exc.current) from exc


# -- event range -> webhook endpoint ----------------------------------------------------------------


@dataclass(frozen=True)
class RangeReplay:
    replay_id: str
    endpoint_id: str
    from_position: int
    to_position: int
    scanned: int
    matched: int
    created: int  # new deliveries (a repeated replay_id creates none)


def replay_range_to_endpoint(
    store: PostgresEventStore,
    webhooks: WebhookStore,
    endpoint: Endpoint,
    from_position: int,
    to_position: int,
    replay_id: str | None = None,
    batch: int = 1000,
    on_progress: Callable[[int, int], None] | None = None,
) -> RangeReplay:
    """Queue the endpoint's matching events with ``from_position <= position <= to_position`` as new
    deliveries (kind ``replay``), through the normal delivery path (order, signing, retries, log).

    Matching is the relay's (event types, entity ids, predicates) minus ``start_position``: an operator
    may replay history older than the endpoint. Each delivery's dedup key is
    ``replay:<replay_id>:<event id>``, so retrying one replay request (same ``replay_id``) queues
    nothing twice, while a new replay re-sends (new webhook-ids)."""
    rid = replay_id or uuid.uuid4().hex
    matcher = replace(endpoint, start_position=0, status="active")
    after = from_position - 1
    scanned = matched = 0
    before = _count_replayed(webhooks, endpoint.id, rid)
    while after < to_position:
        events = store.read_all(after, limit=batch, tenant_id=endpoint.tenant_id, max_position=to_position)
        if not events:
            break
        rows = [
            {
                "tenant_id": e.tenant_id,
                "endpoint_id": endpoint.id,
                "kind": "replay",
                "dedup_key": f"replay:{rid}:{e.event_id}",
                "event_id": str(e.event_id),
                "position": e.position,
                "event_type": e.event_type,
                "body": event_body(e),
            }  # fmt: skip
            for e in events
            if matcher.matches(e)
        ]
        scanned += len(events)
        matched += len(rows)
        if rows:
            with webhooks.engine.begin() as conn:
                webhooks.insert_deliveries(conn, rows)
        after = events[-1].position
        if on_progress is not None:
            on_progress(after, scanned)
    created = _count_replayed(webhooks, endpoint.id, rid) - before
    return RangeReplay(rid, endpoint.id, from_position, to_position, scanned, matched, created)


def _count_replayed(webhooks: WebhookStore, endpoint_id: str, rid: str) -> int:
    with webhooks.engine.connect() as conn:
        return int(
            conn.exec_driver_sql(
                "SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = %(e)s AND kind = 'replay' "
                "AND starts_with(dedup_key, %(p)s)",
                {"e": endpoint_id, "p": f"replay:{rid}:"},
            ).scalar_one()
        )


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
    store: PostgresEventStore,
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

    rid = uuid.uuid4().hex
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
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

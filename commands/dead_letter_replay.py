"""Dead-letter replay (``POST /v1/deadletter/{id}/replay``) and dismissal.

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

Legacy CDC letters (pipeline ``cdc``) hold a canonical change record, not an event: they are
re-translated by the legacy sources (services/legacy_sources.py), injected as ``cdc``.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from commands.dead_letters import (
    CDC_PIPELINE,
    DISMISSED,
    FAILED,
    REPLAY_PENDING,
    REPLAYED,
    DeadLetter,
    DeadLetterLog,
    InvalidTransition,
)
from commands.ports import AppendResult, IdempotencyRecord, IdempotencyReplay, StreamWrite, VersionConflict
from domain.events import EVENT_TYPES, NewEvent, RecordedEvent
from domain.validation import event_problems

log = logging.getLogger(__name__)

IDEMPOTENCY_PREFIX = "agentflow\ndeadletter-replay:"
MAX_VERSION_RETRIES = 8


class ReplayStore(Protocol):
    """The event store as the replay appends to it (connectors/event_store.py)."""

    def stream_version(self, tenant_id: str, stream_type: str, stream_id: str) -> int: ...

    def append(
        self, tenant_id: str, writes: Sequence[StreamWrite], metadata: dict[str, Any],
        idempotency: IdempotencyRecord | None = None,
    ) -> AppendResult: ...  # fmt: skip


class EventLookup(Protocol):
    """Single-event reads of the store (connectors/event_lookup.py)."""

    def find_event(
        self, tenant_id: str | None, event_id: str | None, position: int | None
    ) -> RecordedEvent | None:
        """By event id when it is a UUID, else by position, in the tenant."""
        ...

    def replayed_event(
        self, tenant_id: str, stream_type: str, stream_id: str, dead_letter_id: int
    ) -> tuple[int, str] | None:
        """(position, event id) of the stream's newest event replayed from ``dead_letter_id``."""
        ...

    def event_id_at(self, position: int) -> str | None: ...


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
    """``cdc``: the legacy sources' re-translation of a ``cdc`` letter; a callable so that it can be
    resolved when the replay runs (the sources start with the process), None where none run."""

    def __init__(
        self,
        events: EventLookup,
        store: ReplayStore,
        letters: DeadLetterLog,
        cdc: Callable[[], CdcReplay | None] = lambda: None,
    ) -> None:
        self.events = events
        self.store = store
        self.letters = letters
        self.cdc = cdc

    # -- replay ---------------------------------------------------------------------------------
    def original_event(self, letter: DeadLetter) -> RecordedEvent | None:
        """The rejected event as stored (by event id, else by position), in the letter's tenant."""
        return self.events.find_event(letter.tenant_id, letter.event_id, letter.position)

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
            cdc = self.cdc()
            if cdc is None:
                raise ReplayRejected(
                    "legacy CDC dead letters replay where legacy sources run",
                    ["legacy sources are off in this process"],
                )
            return cdc(letter, corrected)
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
                found = self.events.replayed_event(
                    tenant_id, original.stream_type, original.stream_id, letter_id
                )
                if found is None:  # pragma: no cover - the idempotency key and the event commit together
                    raise RuntimeError(
                        f"dead letter {letter_id}: replay key used but no replayed event found"
                    ) from None
                return found[0], found[1], False
            return result.last_position, self.events.event_id_at(result.last_position), True
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

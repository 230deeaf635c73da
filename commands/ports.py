"""The event-store port the command handlers depend on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from domain.events import NewEvent, RecordedEvent

StreamKey = tuple[str, str]  # (stream_type, stream_id)


@dataclass(frozen=True, slots=True)
class StreamWrite:
    """Events for one stream; ``expected_version`` is the stream version before the append (0 = new)."""

    stream_type: str
    stream_id: str
    expected_version: int
    events: list[NewEvent]


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """Stored with the events in the same transaction; replayed for a repeated key."""

    key: str
    request_hash: str
    status_code: int
    response: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AppendResult:
    positions: list[int]
    stream_versions: dict[StreamKey, int] = field(default_factory=dict)

    @property
    def last_position(self) -> int:
        return self.positions[-1] if self.positions else 0


class VersionConflict(Exception):
    """Another writer appended to the stream first (or If-Match did not match)."""

    def __init__(self, stream_type: str, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(f"{stream_type} {stream_id}: expected version {expected}, current {actual}")
        self.stream_type = stream_type
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


class DuplicateEventId(Exception):
    """An event carries an id the store already holds (``NewEvent.event_id``); nothing was appended."""


class IdempotencyReplay(Exception):
    """The idempotency key was used before; carries the stored record."""

    def __init__(self, record: IdempotencyRecord) -> None:
        super().__init__(f"idempotency key {record.key} already used")
        self.record = record


class EventStorePort(Protocol):
    def load_stream(
        self, tenant_id: str, stream_type: str, stream_id: str, after_version: int = 0
    ) -> list[RecordedEvent]:
        """Events with version > after_version, in version order, upcast to the current schema
        (domain.upcasting.upcast_event)."""
        ...

    def append(
        self,
        tenant_id: str,
        writes: Sequence[StreamWrite],
        metadata: dict[str, Any],
        idempotency: IdempotencyRecord | None = None,
    ) -> AppendResult:
        """Append atomically: all of ``writes`` or nothing. Positions are global, increasing and assigned
        in write order; a stream's versions continue from ``expected_version``. Raises VersionConflict
        (a stream is not at its expected version), IdempotencyReplay (the key was used: it wins over a
        conflict) or DuplicateEventId; ValueError for writes that name a stream twice, a negative
        expected version or an event of another stream."""
        ...

    def get_idempotency(self, tenant_id: str, key: str) -> IdempotencyRecord | None:
        ...

    def record_rejection(self, tenant_id: str, command: str, code: str, detail: dict[str, Any]) -> None:
        """Remember a rejected command (feeds error_rate); never touches the event store."""
        ...

    def next_id(self, kind: str) -> int:
        """Next number for a generated id (kind: order, payment, product, user; ValueError otherwise)."""
        ...

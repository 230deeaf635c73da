"""In-memory EventStorePort for unit tests, held to the same contract as PostgresEventStore
(tests/port_contracts/event_store.py runs over both).

Like the Postgres store it keeps events as stored (schema version and JSON data as appended) and hands
them out through domain.upcasting.upcast_event; positions come from one sequence shared by every tenant
and are assigned in write order; an append is all or nothing and validates its writes first; event ids
given by the command are kept (and unique); ``next_id`` knows only the id kinds the store has sequences
for. Test hooks: ``load_calls``, ``append_calls``, ``fail_next_append``, ``clock``, ``seed_raw``.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from commands.ports import (
    AppendResult,
    DuplicateEventId,
    IdempotencyRecord,
    IdempotencyReplay,
    StreamWrite,
    VersionConflict,
)
from domain import ids
from domain.events import RecordedEvent
from domain.upcasting import upcast_event

StreamId = tuple[str, str, str]

ID_KINDS = (ids.ORDER_KIND, ids.PAYMENT_KIND, ids.PRODUCT_KIND, ids.USER_KIND)


def _stored(value: Any) -> Any:
    """What a jsonb column gives back (encoded as PostgresEventStore encodes it)."""
    return msgspec.json.decode(msgspec.json.encode(value))


class InMemoryEventStore:
    def __init__(self) -> None:
        self.events: list[RecordedEvent] = []  # as stored (not upcast), in position order
        self.streams: dict[StreamId, list[RecordedEvent]] = {}
        self.idempotency: dict[tuple[str, str], IdempotencyRecord] = {}
        self.rejections: list[tuple[str, str, str, dict[str, Any]]] = []
        self.counters: dict[str, int] = {}
        self.load_calls: list[tuple[str, str, int, int]] = []  # (stream_type, stream_id, after, returned)
        self.append_calls = 0
        self.fail_next_append: Exception | None = None
        self.clock: datetime | None = None
        self._last_position = 0  # the position sequence
        self._event_ids: set[str] = set()
        self._lock = threading.Lock()

    # --- port
    def load_stream(
        self, tenant_id: str, stream_type: str, stream_id: str, after_version: int = 0
    ) -> list[RecordedEvent]:
        with self._lock:
            stored = list(self.streams.get((tenant_id, stream_type, stream_id), []))
        out = [upcast_event(e) for e in stored if e.stream_version > after_version]
        self.load_calls.append((stream_type, stream_id, after_version, len(out)))
        return out

    def append(
        self,
        tenant_id: str,
        writes: Sequence[StreamWrite],
        metadata: dict[str, Any],
        idempotency: IdempotencyRecord | None = None,
    ) -> AppendResult:
        _check_writes(writes)
        with self._lock:
            self.append_calls += 1
            if self.fail_next_append is not None:
                exc, self.fail_next_append = self.fail_next_append, None
                raise exc
            if idempotency is not None and (tenant_id, idempotency.key) in self.idempotency:
                raise IdempotencyReplay(self.idempotency[(tenant_id, idempotency.key)])
            for w in writes:
                actual = len(self.streams.get((tenant_id, w.stream_type, w.stream_id), []))
                if actual != w.expected_version:
                    raise VersionConflict(w.stream_type, w.stream_id, w.expected_version, actual)
            new_ids = [str(uuid.UUID(ev.event_id)) for w in writes for ev in w.events if ev.event_id]
            if len(set(new_ids)) != len(new_ids) or self._event_ids.intersection(new_ids):
                raise DuplicateEventId(f"an event id of this append is taken: {new_ids}")
            now = self.clock or datetime.now(UTC)  # one transaction: one timestamp
            meta = _stored(metadata)
            positions: list[int] = []
            versions: dict[tuple[str, str], int] = {}
            for w in writes:
                stream = self.streams.setdefault((tenant_id, w.stream_type, w.stream_id), [])
                for ev in w.events:
                    rec = self._insert(
                        tenant_id, w.stream_type, w.stream_id, len(stream) + 1, ev.event_id, ev.event_type,
                        ev.schema_version, _stored(ev.data), now, dict(meta),
                    )
                    stream.append(rec)
                    positions.append(rec.position)
                versions[(w.stream_type, w.stream_id)] = len(stream)
            if idempotency is not None:
                self.idempotency[(tenant_id, idempotency.key)] = idempotency
            return AppendResult(positions, versions)

    def get_idempotency(self, tenant_id: str, key: str) -> IdempotencyRecord | None:
        return self.idempotency.get((tenant_id, key))

    def record_rejection(self, tenant_id: str, command: str, code: str, detail: dict[str, Any]) -> None:
        self.rejections.append((tenant_id, command, code, _stored(detail)))

    def next_id(self, kind: str) -> int:
        if kind not in ID_KINDS:
            raise ValueError(f"unknown id kind {kind!r}; expected one of {ID_KINDS}")
        with self._lock:
            self.counters[kind] = self.counters.get(kind, 0) + 1
            return self.counters[kind]

    # --- test helpers
    def seed_raw(
        self,
        tenant_id: str,
        stream_type: str,
        stream_id: str,
        event_type: str,
        schema_version: int,
        data: dict[str, Any],
    ) -> RecordedEvent:
        """Store an event as-is (e.g. at an old schema version), bypassing the command side."""
        with self._lock:
            stream = self.streams.setdefault((tenant_id, stream_type, stream_id), [])
            rec = self._insert(tenant_id, stream_type, stream_id, len(stream) + 1, None, event_type,
                               schema_version, _stored(data), datetime.now(UTC), {})
            stream.append(rec)
            return rec

    def stream(self, tenant_id: str, stream_type: str, stream_id: str) -> list[RecordedEvent]:
        return self.streams.get((tenant_id, stream_type, stream_id), [])

    def types(self, tenant_id: str, stream_type: str, stream_id: str) -> list[str]:
        return [e.event_type for e in self.stream(tenant_id, stream_type, stream_id)]

    def _insert(
        self, tenant_id: str, stream_type: str, stream_id: str, version: int, event_id: str | None,
        event_type: str, schema_version: int, data: dict[str, Any], now: datetime, metadata: dict[str, Any],
    ) -> RecordedEvent:
        """One row; the caller holds the lock."""
        self._last_position += 1
        eid = str(uuid.UUID(event_id)) if event_id else str(uuid.uuid4())
        self._event_ids.add(eid)
        rec = RecordedEvent(
            position=self._last_position,
            tenant_id=tenant_id,
            stream_type=stream_type,
            stream_id=stream_id,
            stream_version=version,
            event_id=eid,
            event_type=event_type,
            schema_version=schema_version,
            data=data,
            occurred_at=now,
            recorded_at=now,
            transaction_id=self.append_calls,
            metadata=metadata,
        )
        self.events.append(rec)
        return rec


def _check_writes(writes: Sequence[StreamWrite]) -> None:
    """What PostgresEventStore refuses before any SQL."""
    seen: set[tuple[str, str]] = set()
    for w in writes:
        key = (w.stream_type, w.stream_id)
        if key in seen:
            raise ValueError(f"stream {key} appears twice in one append")
        seen.add(key)
        if w.expected_version < 0:
            raise ValueError(f"negative expected_version for {key}")
        for ev in w.events:
            if (ev.stream_type, ev.stream_id) != key:
                raise ValueError(f"event for {(ev.stream_type, ev.stream_id)} inside the write for {key}")

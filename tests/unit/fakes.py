"""In-memory EventStorePort for unit tests."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from commands.ports import AppendResult, IdempotencyRecord, IdempotencyReplay, StreamWrite, VersionConflict
from domain.events import RecordedEvent
from domain.upcasting import upcast

StreamId = tuple[str, str, str]


class InMemoryEventStore:
    def __init__(self) -> None:
        self.events: list[RecordedEvent] = []
        self.streams: dict[StreamId, list[RecordedEvent]] = {}
        self.idempotency: dict[tuple[str, str], IdempotencyRecord] = {}
        self.rejections: list[tuple[str, str, str, dict[str, Any]]] = []
        self.counters: dict[str, int] = {}
        self.load_calls: list[tuple[str, str, int, int]] = []  # (stream_type, stream_id, after, returned)
        self.append_calls = 0
        self.fail_next_append: Exception | None = None
        self.clock: datetime | None = None
        self._lock = threading.Lock()

    # --- port
    def load_stream(
        self, tenant_id: str, stream_type: str, stream_id: str, after_version: int = 0
    ) -> list[RecordedEvent]:
        with self._lock:
            stored = list(self.streams.get((tenant_id, stream_type, stream_id), []))
        out = []
        for e in stored:
            if e.stream_version <= after_version:
                continue
            version, data = upcast(e.event_type, e.schema_version, e.data)
            out.append(_replace(e, schema_version=version, data=data))
        self.load_calls.append((stream_type, stream_id, after_version, len(out)))
        return out

    def append(
        self,
        tenant_id: str,
        writes: Sequence[StreamWrite],
        metadata: dict[str, Any],
        idempotency: IdempotencyRecord | None = None,
    ) -> AppendResult:
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
            positions: list[int] = []
            versions: dict[tuple[str, str], int] = {}
            txid = self.append_calls
            for w in writes:
                stream = self.streams.setdefault((tenant_id, w.stream_type, w.stream_id), [])
                for ev in w.events:
                    now = self.clock or datetime.now(UTC)
                    rec = RecordedEvent(
                        position=len(self.events) + 1,
                        tenant_id=tenant_id,
                        stream_type=w.stream_type,
                        stream_id=w.stream_id,
                        stream_version=len(stream) + 1,
                        event_id=str(uuid.uuid4()),
                        event_type=ev.event_type,
                        schema_version=ev.schema_version,
                        data=ev.data,
                        occurred_at=now,
                        recorded_at=now,
                        transaction_id=txid,
                        metadata=dict(metadata),
                    )
                    stream.append(rec)
                    self.events.append(rec)
                    positions.append(rec.position)
                versions[(w.stream_type, w.stream_id)] = len(stream)
            if idempotency is not None:
                self.idempotency[(tenant_id, idempotency.key)] = idempotency
            return AppendResult(positions, versions)

    def get_idempotency(self, tenant_id: str, key: str) -> IdempotencyRecord | None:
        return self.idempotency.get((tenant_id, key))

    def record_rejection(self, tenant_id: str, command: str, code: str, detail: dict[str, Any]) -> None:
        self.rejections.append((tenant_id, command, code, detail))

    def next_id(self, kind: str) -> int:
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
        stream = self.streams.setdefault((tenant_id, stream_type, stream_id), [])
        now = datetime.now(UTC)
        rec = RecordedEvent(
            len(self.events) + 1,
            tenant_id,
            stream_type,
            stream_id,
            len(stream) + 1,
            str(uuid.uuid4()),
            event_type,
            schema_version,
            data,
            now,
            now,
        )
        stream.append(rec)
        self.events.append(rec)
        return rec

    def stream(self, tenant_id: str, stream_type: str, stream_id: str) -> list[RecordedEvent]:
        return self.streams.get((tenant_id, stream_type, stream_id), [])

    def types(self, tenant_id: str, stream_type: str, stream_id: str) -> list[str]:
        return [e.event_type for e in self.stream(tenant_id, stream_type, stream_id)]


def _replace(e: RecordedEvent, **changes: Any) -> RecordedEvent:
    from dataclasses import replace

    return replace(e, **changes)

"""Idempotency-Key: the key's record commits with the command's events; a repeat replays it.

The record stores the command's answer without its position (unknown until the insert) and
where its last event lives; a replay looks that event's position up.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from commands.ports import EventStorePort, IdempotencyRecord, StreamKey, StreamWrite

_LAST_EVENT = "_last_event"


@dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    key: str
    request_hash: str


def request_hash(name: str, entity_id: str | None, payload: dict[str, Any]) -> str:
    """What "the same request" means for a repeated key: command, entity id and body (key order free)."""
    canonical = msgspec.json.encode([name, entity_id, payload], order="sorted")
    return hashlib.sha256(canonical).hexdigest()


class IdempotencyKeyReused(Exception):
    """The key was used before with a different request (HTTP 422)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"Idempotency-Key {key!r} was already used with a different request body")
        self.key = key


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    entity_type: str
    entity_id: str
    stream_version: int
    position: int
    created: bool


def record_for(
    claim: IdempotencyClaim,
    primary: StreamKey,
    primary_version: int,
    created: bool,
    writes: Sequence[StreamWrite],
) -> IdempotencyRecord:
    last = writes[-1]
    response = {
        f"{primary[0]}_id": primary[1],
        "stream_version": primary_version,
        _LAST_EVENT: [last.stream_type, last.stream_id, last.expected_version + len(last.events)],
    }
    return IdempotencyRecord(claim.key, claim.request_hash, 201 if created else 200, response)


def stored_answer(
    store: EventStorePort, tenant_id: str, claim: IdempotencyClaim, record: IdempotencyRecord
) -> StoredAnswer:
    """The original answer for a repeated key; raises IdempotencyKeyReused for another request."""
    if record.request_hash != claim.request_hash:
        raise IdempotencyKeyReused(claim.key)
    response = dict(record.response)
    stream_type, stream_id, version = response.pop(_LAST_EVENT)
    (id_field,) = (k for k in response if k.endswith("_id"))
    events = store.load_stream(tenant_id, stream_type, stream_id, after_version=version - 1)
    return StoredAnswer(
        entity_type=id_field[: -len("_id")],
        entity_id=str(response[id_field]),
        stream_version=int(response["stream_version"]),
        position=events[0].position if events else 0,
        created=record.status_code == 201,
    )

"""Dead letters, the write side's view: the record a pipeline stage files for an event it rejected,
its status machine, and the port of the dead-letter store (connectors/dead_letters.py implements it).

Statuses (migration 0005): ``failed`` -> ``replay_pending`` -> ``replayed``, or ``failed`` ->
``dismissed``; ``replay_pending`` may fall back to ``failed`` when the append fails. Every status
change is one conditional update (from the statuses TRANSITIONS allows), so two operators racing on
one dead letter cannot both move it. The replay is commands/dead_letter_replay.py.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

FAILED, REPLAY_PENDING, REPLAYED, DISMISSED = "failed", "replay_pending", "replayed", "dismissed"
STATUSES = (FAILED, REPLAY_PENDING, REPLAYED, DISMISSED)
PIPELINES = ("embedded", "distributed", "cdc")
CDC_PIPELINE = "cdc"  # legacy CDC (connectors/legacy/ingest.py): letters hold a change record, not an event
# target status -> the statuses it may be entered from. replay_pending -> replay_pending re-claims a
# replay whose process died between the claim and the append (the store's idempotency key makes
# the second append a no-op); replayed and dismissed are final.
TRANSITIONS: dict[str, frozenset[str]] = {
    REPLAY_PENDING: frozenset({FAILED, REPLAY_PENDING}),
    REPLAYED: frozenset({REPLAY_PENDING}),
    FAILED: frozenset({REPLAY_PENDING}),
    DISMISSED: frozenset({FAILED}),
}
FINAL = frozenset({REPLAYED, DISMISSED})


class InvalidTransition(Exception):
    """The dead letter is not in a status the requested change may start from."""

    def __init__(self, letter_id: int, current: str | None, target: str) -> None:
        super().__init__(f"dead letter {letter_id} is {current or 'missing'}; cannot become {target}")
        self.letter_id = letter_id
        self.current = current
        self.target = target


def can_transition(current: str, target: str) -> bool:
    return current in TRANSITIONS.get(target, frozenset())


# (substring of a validation problem, class): the first problem of a reason names its class
REASON_CLASSES: tuple[tuple[str, str], ...] = (
    ("unknown event type", "unknown_event_type"),
    ("belongs to stream type", "stream_type"),
    ("schema_version", "schema_version"),
    ("missing fields", "schema_fields"),
    ("unexpected fields", "schema_fields"),
    ("data is not an object", "schema_fields"),
    ("!= stream id", "stream_id"),
    ("sum of lines", "total_mismatch"),
    ("unknown currency", "currency"),
    ("line ", "order_lines"),
    ("lines must be", "order_lines"),
    ("more than", "order_lines"),
    ("must be an integer", "range"),
    ("out of range", "range"),
    ("must be positive", "range"),
    ("outside", "range"),
)


def reason_class(stage: str, reason: str) -> str:
    """A coarse class for stats: ``parse`` for parse failures, else the first validation problem's."""
    if stage == "parse":
        return "parse"
    first = reason.split("; ", 1)[0]
    for needle, cls in REASON_CLASSES:
        if needle in first:
            return cls
    return "other"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    pipeline: str
    stage: str
    reason: str
    event_id: str | None = None
    position: int | None = None
    tenant_id: str | None = None
    event_type: str | None = None
    record: Any = None
    status: str = "failed"
    id: int | None = None
    created_at: datetime | None = field(default=None, compare=False)
    updated_at: datetime | None = field(default=None, compare=False)
    replayed_at: datetime | None = field(default=None, compare=False)
    dismissed_at: datetime | None = field(default=None, compare=False)
    replay_position: int | None = None
    replay_event_id: str | None = None
    corrected_data: Any = None
    status_note: str | None = None

    @property
    def reason_class(self) -> str:
        return reason_class(self.stage, self.reason)

    def dedup_id(self) -> str:
        """The event id, or ``record:<sha256 of the canonical record>`` when there is none."""
        if self.event_id:
            return self.event_id
        raw = json.dumps(self.record, sort_keys=True, default=str, separators=(",", ":"))
        return "record:" + hashlib.sha256(raw.encode()).hexdigest()


class DeadLetterLog(Protocol):
    """The dead-letter store as the replay uses it."""

    def get(self, tenant_id: str | None, letter_id: int) -> DeadLetter | None:
        """One dead letter; ``tenant_id=None`` finds it in any tenant."""
        ...

    def transition(
        self, letter_id: int, target: str, tenant_id: str | None = None, note: str | None = None,
        replay_position: int | None = None, replay_event_id: str | None = None, corrected_data: Any = None,
    ) -> DeadLetter:  # fmt: skip
        """Move the letter to ``target`` if its status allows (TRANSITIONS); raises InvalidTransition
        otherwise (with the current status, None when it does not exist)."""
        ...

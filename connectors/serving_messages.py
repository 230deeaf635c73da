"""The serving and dead-letter messages Flink writes to Kafka (projections/flink/pipeline.py), decoded.

``<prefix>.serving`` carries one message per applied event: the rows projections.rows.project produced
(timestamps as ISO strings or epoch milliseconds) and the ``events`` row; ``<prefix>.deadletter`` one per
event Flink could not parse, validate or project.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from connectors.dead_letters import DeadLetter
from domain.events import EVENT_TYPES, RecordedEvent
from projections.rows import TABLES, Row
from readmodels.schema import columns

PIPELINE = "distributed"

# The applied events the loader hands to on_applied: rebuilt from the ``events`` row every serving
# message carries (transaction_id is 0), so the read cache's invalidation works as in the embedded runner.
AppliedEvent = RecordedEvent

_TIME_COLUMNS = {t: frozenset(c for c, ty in columns(t) if "DateTime64" in ty) for t in TABLES}


def parse_ts(value: Any) -> datetime | None:
    """ISO-8601 string (naive = UTC) or epoch milliseconds -> tz-aware datetime."""
    if value is None or isinstance(value, datetime):
        return _utc(value) if isinstance(value, datetime) else None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000, UTC)
    text = str(value)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    return _utc(datetime.fromisoformat(text))


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def decode_row(table: str, row: dict[str, Any]) -> Row:
    """A serving row as projections.rows.project produced it: DateTime64 columns back to datetimes."""
    out = dict(row)
    for col in _TIME_COLUMNS[table]:
        if col in out:
            out[col] = parse_ts(out[col])
    return out


def applied_event(msg: dict[str, Any], events_row: Row | None, key: str | None) -> AppliedEvent:
    """The RecordedEvent a serving message stands for (from its ``events`` row when present)."""
    if events_row is not None:
        r = events_row
        return RecordedEvent(
            int(r["position"]),
            str(r["tenant_id"]),
            str(r["stream_type"]),
            str(r["stream_id"]),
            int(r["stream_version"]),
            str(r["event_id"]),
            str(r["event_type"]),
            int(r["schema_version"]),
            _json_obj(r.get("data")),
            r["occurred_at"],
            r["recorded_at"],
            0,
            _json_obj(r.get("metadata")),
        )
    event_type = str(msg.get("event_type") or "")
    stream_type = EVENT_TYPES[event_type][0] if event_type in EVENT_TYPES else ""
    now = datetime.now(UTC)
    return RecordedEvent(
        int(msg["position"]),
        str(msg.get("tenant_id") or ""),
        stream_type,
        key or "",
        0,
        str(msg.get("event_id") or ""),
        event_type,
        1,
        {},
        now,
        now,
    )


def _json_obj(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = json.loads(value)
    return value if isinstance(value, dict) else {}


def position_of(value: Any) -> int | None:
    try:
        return None if value is None or isinstance(value, bool) else int(value)
    except (TypeError, ValueError):
        return None


def dead_letter_of(msg: dict[str, Any]) -> DeadLetter:
    record = msg.get("record")
    position = position_of(msg.get("position"))
    if position is None and isinstance(record, dict):
        position = position_of(record.get("position"))  # a parse failure may still carry it
    return DeadLetter(
        pipeline=PIPELINE,
        stage=str(msg.get("stage") or "unknown"),
        reason=str(msg.get("reason") or ""),
        event_id=msg.get("event_id") or None,
        position=position,
        tenant_id=msg.get("tenant_id") or None,
        event_type=msg.get("event_type") or None,
        record=record,
    )

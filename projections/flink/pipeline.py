"""The pure steps of the distributed projection, shared by the Flink job and its unit tests.

A CDC record (one row of the ``events`` table as Debezium's ExtractNewRecordState renders it) is
decoded into a RecordedEvent, upcast and validated with the domain's own rules, deduplicated by event
id, and projected with ``projections.rows.project`` -- the code the embedded runner uses. Every input
yields exactly one message: a serving message carrying all the row upserts of the event, or a dead
letter with the stage and reason. No Flink imports here: the job wires these into operators.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from domain.events import RecordedEvent
from domain.upcasting import upcast
from domain.validation import event_problems
from projections.flink.sql import LAKE_TABLES, TS
from projections.rows import EVENTS, ORDERS, PAYMENTS, Key, Row, RowChange, dumps_row, project

PARSE = "parse"
VALIDATE = "validate"
PROJECT = "project"

# tables whose rows project() looks up; the events table is write-only, so its rows are not kept
LOOKUP_TABLES = frozenset({"orders", "order_lines", "payments", "products", "users", "sessions"})

_REQUIRED = ("position", "tenant_id", "stream_type", "stream_id", "stream_version", "event_id", "event_type")


class InvalidRecord(Exception):
    def __init__(self, stage: str, reason: str, event: RecordedEvent | None = None) -> None:
        super().__init__(reason)
        self.stage = stage
        self.reason = reason
        self.event = event


@dataclass(frozen=True, slots=True)
class Decoded:
    event: RecordedEvent
    source_ts_ms: int | None


def now_ms() -> int:
    return int(time.time() * 1000)


def _timestamp(value: Any) -> datetime:
    if isinstance(value, str):
        ts = datetime.fromisoformat(value)
        return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1_000_000, tz=UTC)  # Debezium MicroTimestamp
    raise ValueError(f"unreadable timestamp {value!r}")


def _json_value(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def load_record(value: str | bytes | None) -> dict[str, Any]:
    if value is None:
        raise InvalidRecord(PARSE, "empty record (tombstone)")
    try:
        record = json.loads(value)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidRecord(PARSE, f"not JSON: {e}") from None
    if isinstance(record, dict) and "payload" in record and "schema" in record:
        record = record["payload"]  # a converter with schemas enabled
    if not isinstance(record, dict):
        raise InvalidRecord(PARSE, "record is not a JSON object")
    return record


_TENANT_FIELD = re.compile(r'"tenant_id":\s*"([^"\\]*)"')


def tenant_of(value: str | bytes | None) -> str:
    """The key for tenant-partitioned state; "" for a record that cannot be read (dead-lettered later).

    Runs once per record in its own operator before the shuffle: a regex on the compact JSON Debezium
    writes is ~10x cheaper than parsing it; anything unusual (escapes, bytes, envelopes) is parsed."""
    if isinstance(value, str):
        found = _TENANT_FIELD.findall(value)
        if len(found) == 1 and '"payload"' not in value:
            return str(found[0])
    try:
        tenant = load_record(value).get("tenant_id")
    except InvalidRecord:
        return ""
    return tenant if isinstance(tenant, str) else ""


def decode(value: str | bytes | None) -> Decoded:
    """CDC record -> upcast, validated RecordedEvent; raises InvalidRecord(stage, reason)."""
    record = load_record(value)
    missing = [f for f in _REQUIRED if record.get(f) in (None, "")]
    if missing:
        raise InvalidRecord(PARSE, f"missing columns {missing}")
    try:
        data = _json_value(record.get("data"))
        metadata = _json_value(record.get("metadata")) or {}
        occurred = _timestamp(record.get("occurred_at"))
        recorded = _timestamp(record.get("recorded_at") or record.get("occurred_at"))
        event = RecordedEvent(
            position=int(record["position"]),
            tenant_id=str(record["tenant_id"]),
            stream_type=str(record["stream_type"]),
            stream_id=str(record["stream_id"]),
            stream_version=int(record["stream_version"]),
            event_id=str(record["event_id"]),
            event_type=str(record["event_type"]),
            schema_version=int(record.get("schema_version") or 1),
            data=data,
            occurred_at=occurred,
            recorded_at=recorded,
            metadata=metadata if isinstance(metadata, dict) else {},
        )
    except (ValueError, TypeError) as e:
        raise InvalidRecord(PARSE, f"unreadable column: {e}") from None
    source_ts = record.get("__source_ts_ms")
    source_ts_ms = int(source_ts) if isinstance(source_ts, int | float) else None
    if isinstance(event.data, dict):
        try:
            version, data = upcast(event.event_type, event.schema_version, event.data)
        except (ValueError, KeyError, TypeError) as e:
            raise InvalidRecord(VALIDATE, f"upcast failed: {e}", event) from None
        event = _with(event, schema_version=version, data=data)
    problems = event_problems(
        event.event_type, event.stream_type, event.stream_id, event.schema_version, event.data
    )
    if problems:
        raise InvalidRecord(VALIDATE, "; ".join(problems), event)
    return Decoded(event, source_ts_ms)


def _with(e: RecordedEvent, schema_version: int, data: dict[str, Any]) -> RecordedEvent:
    return RecordedEvent(
        e.position, e.tenant_id, e.stream_type, e.stream_id, e.stream_version, e.event_id, e.event_type,
        schema_version, data, e.occurred_at, e.recorded_at, e.transaction_id, e.metadata,
    )  # fmt: skip


class RowState(Protocol):
    """Keyed state holding the rows project() looks up (a Flink MapState, or a dict in tests)."""

    def get(self, key: str) -> Any: ...

    def put(self, key: str, value: Any) -> None: ...


class StateLookup:
    """RowLookup over a RowState; remembers what it wrote so a batch sees its own changes."""

    def __init__(self, state: RowState) -> None:
        self.state = state

    @staticmethod
    def state_key(table: str, key: Key) -> str:
        return table + "|" + json.dumps(list(key), separators=(",", ":"), default=str)

    def get(self, table: str, key: Key) -> Row | None:
        row = self.state.get(self.state_key(table, key))
        return dict(row) if row is not None else None

    def apply(self, changes: Iterable[RowChange]) -> None:
        for c in changes:
            if c.table in LOOKUP_TABLES:
                self.state.put(self.state_key(c.table, c.key), c.row)


def project_event(event: RecordedEvent, lookup: StateLookup) -> list[RowChange]:
    """project() with its failures turned into InvalidRecord(PROJECT) and its rows kept in state."""
    try:
        changes = project(event, lookup)
    except Exception as e:  # a projection bug or an event the stateless checks let through
        raise InvalidRecord(PROJECT, f"{type(e).__name__}: {e}", event) from None
    lookup.apply(changes)
    return changes


def serving_message(decoded: Decoded, changes: list[RowChange], at_ms: int | None = None) -> str:
    e = decoded.event
    return json.dumps(
        {
            "position": e.position,
            "tenant_id": e.tenant_id,
            "event_id": e.event_id,
            "event_type": e.event_type,
            "stream_type": e.stream_type,
            "stream_id": e.stream_id,
            "changes": [{"table": c.table, "row": dumps_row(c.row)} for c in changes],
            "source_ts_ms": decoded.source_ts_ms,
            "flink_ts_ms": at_ms if at_ms is not None else now_ms(),
        },
        separators=(",", ":"),
        default=str,
    )


def dead_letter_message(error: InvalidRecord, value: str | bytes | None, at_ms: int | None = None) -> str:
    try:
        record: Any = load_record(value)
    except InvalidRecord:
        record = value.decode(errors="replace") if isinstance(value, bytes) else value
    e = error.event
    raw = record if isinstance(record, dict) else {}
    return json.dumps(
        {
            "position": e.position if e else _int_or_none(raw.get("position")),
            "tenant_id": e.tenant_id if e else raw.get("tenant_id"),
            "event_id": e.event_id if e else raw.get("event_id"),
            "event_type": e.event_type if e else raw.get("event_type"),
            "stream_id": e.stream_id if e else raw.get("stream_id"),
            "stage": error.stage,
            "reason": error.reason,
            "record": record,
            "failed_at_ms": at_ms if at_ms is not None else now_ms(),
        },
        separators=(",", ":"),
        default=str,
    )


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


HISTORY_OF = {ORDERS: "orders_history", PAYMENTS: "payments_history"}


def lake_record(table: str, row: Row) -> tuple[Any, ...]:
    """A row as the values of the lake table's columns (timestamps as epoch ms, lines as JSON)."""
    out: list[Any] = []
    for column, ty in LAKE_TABLES[table]:
        value = row.get(column)
        if ty == TS and isinstance(value, datetime):
            value = int(value.timestamp() * 1000)
        elif column == "lines" and not isinstance(value, str | None):
            value = json.dumps(value, sort_keys=True)
        out.append(value)
    return tuple(out)


def lake_records(event: RecordedEvent, changes: list[RowChange]) -> list[tuple[str, tuple[Any, ...]]]:
    """(lake table, values) for the events table and the order/payment history tables."""
    out = []
    for c in changes:
        if c.table == EVENTS:
            out.append(("events", lake_record("events", c.row)))
        elif c.table in HISTORY_OF:
            history = HISTORY_OF[c.table]
            out.append((history, lake_record(history, {**c.row, "event_type": event.event_type})))
    return out


@dataclass(frozen=True, slots=True)
class Outcome:
    """One input's result: a serving or a dead-letter message, or nothing for a duplicate."""

    serving: str | None = None
    dead_letter: str | None = None
    stream_id: str = ""
    lake: tuple[tuple[str, tuple[Any, ...]], ...] = ()


def process(
    value: str | bytes | None,
    seen: Callable[[str], bool],
    mark_seen: Callable[[str], None],
    lookup: StateLookup,
) -> Outcome:
    """Decode, validate, deduplicate by event id, project. ``seen``/``mark_seen`` are the dedup state."""
    try:
        decoded = decode(value)
        if seen(decoded.event.event_id):
            return Outcome()
        changes = project_event(decoded.event, lookup)
    except InvalidRecord as err:
        if err.event is not None:
            if seen(err.event.event_id):
                return Outcome()
            mark_seen(err.event.event_id)
        stream_id = err.event.stream_id if err.event else ""
        return Outcome(dead_letter=dead_letter_message(err, value), stream_id=stream_id)
    mark_seen(decoded.event.event_id)
    return Outcome(
        serving=serving_message(decoded, changes),
        stream_id=decoded.event.stream_id,
        lake=tuple(lake_records(decoded.event, changes)),
    )

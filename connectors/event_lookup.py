"""Single-event reads of the event store that the dead-letter replay needs (commands/dead_letter_replay.py
declares them as its ``EventLookup`` port)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.engine import Engine

from connectors.event_store import EVENT_COLUMNS, row_to_event
from domain.events import RecordedEvent


class EventLookup:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def find_event(
        self, tenant_id: str | None, event_id: str | None, position: int | None
    ) -> RecordedEvent | None:
        """The event as stored, by event id (when it is a UUID), else by position, in the tenant."""
        params: dict[str, Any] = {"t": tenant_id}
        try:
            params["id"] = str(uuid.UUID(str(event_id)))
            clause = "event_id = %(id)s::uuid"
        except ValueError:
            if position is None:
                return None
            params["p"] = position
            clause = "position = %(p)s"
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = %(t)s AND {clause}"
        with self.engine.connect() as conn:
            row = conn.exec_driver_sql(sql, params).first()
        return row_to_event(row) if row is not None else None

    def replayed_event(
        self, tenant_id: str, stream_type: str, stream_id: str, dead_letter_id: int
    ) -> tuple[int, str] | None:
        """(position, event id) of the newest event of the stream replayed from ``dead_letter_id``."""
        with self.engine.connect() as conn:
            row = conn.exec_driver_sql(
                "SELECT position, event_id::text FROM events WHERE tenant_id = %(t)s "
                "AND stream_type = %(st)s AND stream_id = %(sid)s "
                "AND metadata->'replay_of'->>'dead_letter_id' = %(dl)s ORDER BY stream_version DESC LIMIT 1",
                {"t": tenant_id, "st": stream_type, "sid": stream_id, "dl": str(dead_letter_id)},
            ).first()
        return None if row is None else (int(row[0]), str(row[1]))

    def event_id_at(self, position: int) -> str | None:
        with self.engine.connect() as conn:
            value = conn.exec_driver_sql(
                "SELECT event_id::text FROM events WHERE position = %(p)s", {"p": position}
            ).scalar()
        return None if value is None else str(value)

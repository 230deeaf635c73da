"""Server-Sent Events framing of ``/v1/stream/events``: lines in, :class:`StreamEvent` out. The parser
remembers the last ``id`` (the resume point, sent back as ``Last-Event-ID``) and the server's ``retry``
(milliseconds to wait before reconnecting)."""

from __future__ import annotations

from typing import Any

import msgspec

from agentflow_client.types import StreamEvent

DEFAULT_RETRY_S = 2.0


class SseParser:
    def __init__(self, last_event_id: int | None = None) -> None:
        self.last_event_id = last_event_id
        self.retry_s = DEFAULT_RETRY_S
        self._id: str | None = None
        self._event = "message"
        self._data: list[str] = []

    def feed(self, line: str) -> StreamEvent | None:
        """One line without its end-of-line; an event when the line ends one."""
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment: stream open, heartbeat
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            self._id = value
        elif name == "retry" and value.isdigit():
            self.retry_s = int(value) / 1000.0
        return None

    def _dispatch(self) -> StreamEvent | None:
        data, event, ident = self._data, self._event, self._id
        self._data, self._event, self._id = [], "message", None
        if not data:
            return None
        payload: Any = msgspec.json.decode("\n".join(data))
        position = int(ident) if ident is not None and ident.isdigit() else None
        if position is not None:
            self.last_event_id = position
        return StreamEvent(position if position is not None else -1, event, payload)


def stream_params(
    event_type: str | list[str] | None, entity_type: str | None, entity_id: str | None,
    heartbeat: float | None, max_events: int | None,
) -> dict[str, Any]:
    types = ",".join(event_type) if isinstance(event_type, list) else event_type
    values = {"event_type": types, "entity_type": entity_type, "entity_id": entity_id,
              "heartbeat": heartbeat, "max_events": max_events}  # fmt: skip
    return {k: v for k, v in values.items() if v is not None}

"""Reading a Server-Sent Events body (GET /v1/stream/events) the way a client parses it."""

from __future__ import annotations

import json
from typing import Any


def frames(text: str) -> tuple[list[dict[str, Any]], list[str]]:
    """(events as {id, event, data}, comment lines) of an SSE body."""
    events: list[dict[str, Any]] = []
    comments: list[str] = []
    for block in text.split("\n\n"):
        frame: dict[str, str] = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                comments.append(line)
            elif line:
                key, _, value = line.partition(": ")
                frame[key] = value
        if "data" in frame:
            events.append(
                {"id": int(frame["id"]), "event": frame["event"], "data": json.loads(frame["data"])}
            )
    return events, comments

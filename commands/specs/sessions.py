"""Session commands: record a browsing event (the session's stream opens with its first event)."""

from __future__ import annotations

from typing import Any

from commands.specs.base import Aggregates, CommandSpec, NewId, Prepared
from commands.validation import Fields
from domain import ids
from domain.events import NewEvent
from domain.session import API_EVENT_TYPES, Session

MAX_PAGE_URL = 2048


def _prep_record(entity_id: str | None, f: Fields, new_id: NewId) -> Prepared:
    if entity_id is None or not ids.validate_id(entity_id):
        f.errors.append({"field": "session_id",
                         "message": "must be a non-empty id of at most 64 characters [A-Za-z0-9._:-]"})
    kind = f.choice("type", tuple(API_EVENT_TYPES))
    user_id = f.ident("user_id", required=False)
    page_url = f.text("page_url", max_len=MAX_PAGE_URL)
    product_id = f.ident("product_id", required=False)
    f.raise_if_invalid()
    assert entity_id is not None and kind is not None
    return Prepared(entity_id, {"event_type": API_EVENT_TYPES[kind], "user_id": user_id,
                                "page_url": page_url, "product_id": product_id})


def _record(agg: Aggregates, sid: str, a: dict[str, Any]) -> list[NewEvent]:
    return agg.load(Session, sid).decide_record(sid, a["event_type"], a["user_id"], a["page_url"],
                                                a["product_id"])


SESSION_COMMANDS: dict[str, CommandSpec] = {
    "session.record": CommandSpec(Session, False, _prep_record, _record),
}

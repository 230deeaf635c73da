"""The one definition of a clickstream session, shared by commands, projections and time travel.

Funnel: browse (page view) < engaged (click) < cart (add to cart) < checkout (checkout started).
A session's stage is the furthest stage any of its events reached; it converts when it reaches
checkout. A session is active while its last event is at most ACTIVE_WINDOW_SECONDS old.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from domain import errors
from domain.base import Aggregate, EventLike, make_event
from domain.errors import DomainError
from domain.events import SESSION, SESSION_EVENT_TYPES, NewEvent

ACTIVE_WINDOW_SECONDS = 300

BROWSE = "browse"
ENGAGED = "engaged"
CART = "cart"
CHECKOUT = "checkout"
FUNNEL_STAGES: tuple[str, ...] = (BROWSE, ENGAGED, CART, CHECKOUT)
STAGE_RANK: dict[str, int] = {stage: i for i, stage in enumerate(FUNNEL_STAGES)}
CONVERSION_STAGE = CHECKOUT
CONVERSION_EVENT = "CheckoutStarted"

EVENT_STAGE: dict[str, str] = {
    "PageViewed": BROWSE,
    "ElementClicked": ENGAGED,
    "ItemAddedToCart": CART,
    "CheckoutStarted": CHECKOUT,
}
SESSION_EVENTS = frozenset(EVENT_STAGE)

# API names (plus the "checkout" alias of API.md) -> event type
API_EVENT_TYPES: dict[str, str] = {**SESSION_EVENT_TYPES, "checkout": "CheckoutStarted"}


def furthest_stage(current: str | None, event_type: str) -> str | None:
    """The stage after an event: never moves backwards."""
    new = EVENT_STAGE.get(event_type)
    if new is None:
        return current
    if current is None or STAGE_RANK[new] > STAGE_RANK[current]:
        return new
    return current


def is_conversion(stage: str | None) -> bool:
    return stage == CONVERSION_STAGE


def is_active(last_event_at: datetime | None, now: datetime) -> bool:
    if last_event_at is None:
        return False
    return 0 <= (now - last_event_at).total_seconds() <= ACTIVE_WINDOW_SECONDS


class Session(Aggregate):
    """Folds session events; ``occurred_at`` is taken from RecordedEvents when present."""

    stream_type = SESSION

    def __init__(self) -> None:
        super().__init__()
        self.session_id = ""
        self.user_id: str | None = None
        self.started_at: datetime | None = None
        self.ended_at: datetime | None = None
        self.event_count = 0
        self.pages: set[str] = set()
        self.funnel_stage: str | None = None

    def apply(self, event: EventLike) -> None:
        if event.event_type not in SESSION_EVENTS:
            return
        d = event.data
        self.exists = True
        self.session_id = d["session_id"]
        if d.get("user_id") and not self.user_id:
            self.user_id = d["user_id"]
        at = getattr(event, "occurred_at", None)
        if isinstance(at, datetime):
            if self.started_at is None or at < self.started_at:
                self.started_at = at
            if self.ended_at is None or at > self.ended_at:
                self.ended_at = at
        self.event_count += 1
        if d.get("page_url"):
            self.pages.add(d["page_url"])
        self.funnel_stage = furthest_stage(self.funnel_stage, event.event_type)

    @property
    def is_conversion(self) -> bool:
        return is_conversion(self.funnel_stage)

    @property
    def duration_seconds(self) -> float:
        if self.started_at is None or self.ended_at is None:
            return 0.0
        return (self.ended_at - self.started_at).total_seconds()

    def is_active(self, now: datetime) -> bool:
        return is_active(self.ended_at, now)

    def summary(self) -> dict[str, Any]:
        """The session entity's ``data`` (timestamps as datetimes; the read side formats them)."""
        return {
            "session_id": self.session_id,
            "user_id": self.user_id,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration_seconds": self.duration_seconds,
            "event_count": self.event_count,
            "unique_pages": len(self.pages),
            "funnel_stage": self.funnel_stage,
            "is_conversion": self.is_conversion,
        }

    def decide_record(
        self, session_id: str, event_type: str, user_id: str | None, page_url: str, product_id: str | None
    ) -> list[NewEvent]:
        if event_type not in SESSION_EVENTS:
            raise DomainError(errors.INVALID_TRANSITION, f"{event_type} is not a session event")
        if user_id and self.user_id and user_id != self.user_id:
            raise DomainError(
                errors.SESSION_USER_MISMATCH,
                f"session {session_id} belongs to user {self.user_id}",
                {"session_id": session_id, "user_id": self.user_id, "requested_user_id": user_id},
            )
        data = {"session_id": session_id, "user_id": user_id or self.user_id, "page_url": page_url,
                "product_id": product_id}
        return [make_event(event_type, session_id, data)]


def fold_session(events: Iterable[EventLike]) -> dict[str, Any]:
    """Summary of one session's events (see Session.summary)."""
    return Session.fold(events).summary()

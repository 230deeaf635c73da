"""Shared aggregate plumbing: event folding and event construction checked against EVENT_TYPES."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any, ClassVar, Protocol, TypeVar

from domain.events import EVENT_TYPES, NewEvent


class EventLike(Protocol):
    """Anything with an event type and data: RecordedEvent, NewEvent."""

    @property
    def event_type(self) -> str: ...

    @property
    def data(self) -> dict[str, Any]: ...


A = TypeVar("A", bound="Aggregate")


class Aggregate:
    """State folded from one stream; ``decide_*`` methods are pure and return new events."""

    stream_type: ClassVar[str]

    def __init__(self) -> None:
        self.exists = False

    def apply(self, event: EventLike) -> None:
        handler = getattr(self, "_on_" + event.event_type, None)
        if handler is not None:
            handler(event.data, event)

    def clone(self: A) -> A:
        """Copy whose containers can be mutated without touching this one (their items are immutable)."""
        new = copy.copy(self)
        for name, value in vars(new).items():
            if isinstance(value, dict | list | set):
                setattr(new, name, value.copy())
        return new

    @classmethod
    def fold(cls: type[A], events: Iterable[EventLike]) -> A:
        agg = cls()
        for event in events:
            agg.apply(event)
        return agg


def make_event(event_type: str, stream_id: str, data: dict[str, Any]) -> NewEvent:
    """A NewEvent at the current schema version; its data keys must match the catalogue exactly."""
    try:
        stream_type, version, fields = EVENT_TYPES[event_type]
    except KeyError:
        raise ValueError(f"unknown event type {event_type}") from None
    if set(data) != set(fields):
        raise ValueError(f"{event_type} data fields {sorted(data)} != {sorted(fields)}")
    return NewEvent(stream_type, stream_id, event_type, {f: data[f] for f in fields}, version)

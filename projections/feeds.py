"""Which streams feed an entity: the one rule behind entity folds (time travel, lineage), the event
store's entity reads and the read cache's invalidation.

An order, a product and a session are fed by their own stream. A user is fed by its own stream and by
the streams of the orders it placed: an order names its user in its ``OrderPlaced`` (``user_id``).
A user's data also reads the category of each product of those orders, as it was when the line was
placed; so a fold of a user needs those products' streams too, but a product event never changes a user
afterwards (and does not make a cached user stale).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from domain.events import ORDER, PRODUCT, SESSION, USER, RecordedEvent

StreamKey = tuple[str, str]  # (stream type, stream id)
EntityKey = tuple[str, str]  # (entity type, entity id)

ENTITY_TYPES = (ORDER, USER, PRODUCT, SESSION)
PLACED = "OrderPlaced"


@dataclass(frozen=True, slots=True)
class Link:
    """Streams of ``stream_type`` feed the entity of type ``entity_type`` that their ``event_type``
    event names in its data field ``field``."""

    stream_type: str
    event_type: str
    field: str
    entity_type: str

    def named_by(self, event: RecordedEvent) -> str | None:
        """The id of the entity ``event`` names through this link, or None."""
        if event.stream_type != self.stream_type or event.event_type != self.event_type:
            return None
        value = event.data.get(self.field)
        return str(value) if value else None


# an order feeds the user who placed it (its orders row carries the same ``user_id``)
ORDER_OWNER = Link(ORDER, PLACED, "user_id", USER)

# entity type -> the links of the streams that feed it besides its own
FEEDERS: Mapping[str, tuple[Link, ...]] = MappingProxyType({
    ORDER: (), USER: (ORDER_OWNER,), PRODUCT: (), SESSION: (),
})

_LINKS = tuple(link for links in FEEDERS.values() for link in links)

# stream type -> the links by which its streams feed other entities
LINKS_FROM: Mapping[str, tuple[Link, ...]] = MappingProxyType({
    stream_type: tuple(link for link in _LINKS if link.stream_type == stream_type)
    for stream_type in {link.stream_type for link in _LINKS}
})


def own_stream(entity_type: str, entity_id: str) -> StreamKey:
    """An entity's own stream (every entity type is the stream type of its aggregate)."""
    return entity_type, entity_id


def looked_up_streams(entity_type: str, fed: Iterable[RecordedEvent]) -> set[StreamKey]:
    """Streams a fold of the entity reads besides the ones that feed it (``fed``: their events): for a
    user, the products in the lines of its orders."""
    if entity_type != USER:
        return set()
    return {
        (PRODUCT, str(line["product_id"]))
        for e in fed if e.stream_type == ORDER and e.event_type == PLACED
        for line in e.data.get("lines") or ()
    }


def entity_events(entity_type: str, entity_id: str, events: Iterable[RecordedEvent]) -> list[RecordedEvent]:
    """The events of ``events`` (one tenant) that a fold of the entity needs, in position order: the
    rule above applied to a log in memory (the event store's ``read_entity_events_until`` applies it in
    SQL, and is tested against this)."""
    log = sorted(events, key=lambda e: e.position)
    streams = {own_stream(entity_type, entity_id)}
    for link in FEEDERS.get(entity_type, ()):
        streams.update((link.stream_type, e.stream_id) for e in log if link.named_by(e) == entity_id)
    fed = [e for e in log if (e.stream_type, e.stream_id) in streams]
    streams |= looked_up_streams(entity_type, fed)
    return [e for e in log if (e.stream_type, e.stream_id) in streams]

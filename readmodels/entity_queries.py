"""An entity as served: ``GET /v1/entity/{type}/{id}`` and batch items.

Now: the serving read model's row (after catching up the tables the serving sink writes lazily),
through the read cache (single flight). As of an instant: the event store folded up to it (time travel,
not the current row filtered by time); events the pipeline dead-letters are skipped as it skips them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from anyio import to_thread

from domain.events import STREAM_TYPES
from projections.entities import fold_entity
from projections.rows import invalid_reason
from readmodels.entities import get_entity
from readmodels.errors import ReadNotFound
from readmodels.freshness import Freshness, ReadAfter, iso, parse_as_of
from readmodels.ports import EventHistory, ReadModelStore
from readmodels.read_cache import ReadCache, entity_value

# an entity found: {"data": {...}, "last_updated": ISO text, "version": position of its last event}
Found = dict[str, Any]


class EntityQueries:
    def __init__(
        self, store: ReadModelStore, history: EventHistory, cache: ReadCache, freshness: Freshness
    ) -> None:
        self.store = store
        self.history = history
        self.cache = cache
        self.freshness = freshness

    @staticmethod
    def check_type(entity_type: str) -> None:
        if entity_type not in STREAM_TYPES:
            raise ReadNotFound(
                "unknown_entity_type",
                f"unknown entity type {entity_type!r}",
                {"available": list(STREAM_TYPES)},
            )

    def load(self, tenant: str, entity_type: str, entity_id: str) -> Found | None:
        """The entity now, from the serving read model (blocking)."""
        self.freshness.catch_up()
        row = get_entity(self.store, tenant, entity_type, entity_id)
        if row is None:
            return None
        return {"data": row.data, "last_updated": iso(row.last_updated), "version": row.version}

    def fold(self, tenant: str, entity_type: str, entity_id: str, as_of: datetime) -> Found | None:
        """The entity as it stood at ``as_of``: its events up to then, folded (blocking)."""
        events = self.history.read_entity_events_until(tenant, entity_type, entity_id, as_of)
        events = [e for e in events if invalid_reason(e) is None]  # dead-lettered: never projected
        if not events:
            return None
        data = fold_entity(entity_type, entity_id, events)
        if data is None:
            return None
        return {"data": data, "last_updated": iso(events[-1].occurred_at), "version": events[-1].position}

    async def get(
        self, tenant: str, entity_type: str, entity_id: str, as_of: datetime | None = None
    ) -> Found | None:
        """The entity now (read cache, single flight) or as of an instant; None when there is none."""
        if as_of is not None:
            return await to_thread.run_sync(self.fold, tenant, entity_type, entity_id, as_of)
        found: Found | None = await entity_value(
            self.cache,
            (tenant, entity_type, entity_id),
            lambda: self.load(tenant, entity_type, entity_id),
        )
        return found

    async def read(
        self,
        tenant: str,
        entity_type: str,
        entity_id: str,
        as_of: str | None = None,
        after: ReadAfter | None = None,
    ) -> dict[str, Any]:
        """``GET /v1/entity/{type}/{id}``: the body with ``meta``."""
        self.check_type(entity_type)
        at = parse_as_of(as_of)
        fresh = await self.freshness.wait(after)
        found = await self.get(tenant, entity_type, entity_id, at)
        if found is None:
            raise ReadNotFound("entity_not_found", f"{entity_type} {entity_id!r} not found")
        meta = self.freshness.meta(at, fresh)
        return {
            "entity_type": entity_type,
            "entity_id": entity_id,
            "data": found["data"],
            "last_updated": found["last_updated"],
            "freshness_seconds": meta["freshness_seconds"],
            "meta": meta,
        }

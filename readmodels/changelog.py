"""``GET /v1/changelog``: what changed for a tenant — its applied events newest first, cursor-paginated.

``latest_version``/``versions`` keep the shape existing clients parse: the data version is the applied
position (the watermark the page was read at); ``versions`` groups the page by day. Only applied events
are listed (position <= watermark), so a page never shows a change the read models do not reflect yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from domain.events import RecordedEvent
from readmodels.applied_events import iso
from readmodels.ports import ChangeFeed, ServingProgress


def summary(e: RecordedEvent) -> str:
    return f"{e.stream_type} {e.stream_id}: {e.event_type} (position {e.position})"


class Changelog:
    def __init__(self, feed: ChangeFeed, progress: ServingProgress) -> None:
        self.feed = feed
        self.progress = progress

    def page(
        self,
        tenant: str,
        limit: int,
        before: int | None = None,
        entity_type: str | None = None,
        entity_id: str | None = None,
        event_types: Sequence[str] | None = None,
        since: datetime | None = None,
        fresh: bool = True,
    ) -> dict[str, Any]:
        """One page of at most ``limit`` changes below position ``before`` (the previous page's
        ``next_cursor``); ``meta.stale`` when the caller accepted a read model behind its
        ``min_position``. Blocking (one event-store query)."""
        watermark = self.progress.watermark
        events = self.feed.changes(
            tenant, watermark, limit + 1, before, entity_type, entity_id, event_types, since
        )
        has_more = len(events) > limit
        events = events[:limit]
        changes = [
            {
                "position": e.position,
                "event_id": str(e.event_id),
                "event_type": e.event_type,
                "entity_type": e.stream_type,
                "entity_id": e.stream_id,
                "stream_version": e.stream_version,
                "occurred_at": iso(e.occurred_at),
                "recorded_at": iso(e.recorded_at),
                "data": e.data,
                "summary": summary(e),
            }
            for e in events
        ]
        versions: list[dict[str, Any]] = []
        for e in events:
            day = e.occurred_at.astimezone(UTC).date().isoformat()
            if not versions or versions[-1]["date"] != day:
                status = "latest" if not versions else "previous"
                versions.append({"date": day, "status": status, "changes": []})
            versions[-1]["changes"].append(summary(e))
        meta: dict[str, Any] = {
            "as_of_position": watermark,
            "freshness_seconds": self.progress.freshness_seconds(),
        }
        if not fresh:
            meta["stale"] = True
        return {
            "latest_version": str(watermark),
            "versions": versions,
            "changes": changes,
            "next_cursor": str(events[-1].position) if has_more and events else None,
            "has_more": has_more,
            "page_size": limit,
            "meta": meta,
        }

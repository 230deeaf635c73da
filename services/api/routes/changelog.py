"""``GET /v1/changelog``: the caller's applied events, newest first, cursor-paginated
(readmodels/changelog.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from anyio import to_thread
from litestar import get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from domain.events import EVENT_TYPES, STREAM_TYPES
from readmodels.changelog import Changelog
from services.api.consistency import ReadAfter
from services.api.dependencies import READ
from services.api.errors import ApiError
from services.api.openapi import errors


class Change(msgspec.Struct):
    position: int
    event_id: str
    event_type: str
    entity_type: str
    entity_id: str
    stream_version: int
    occurred_at: str
    recorded_at: str
    data: dict[str, Any]
    summary: str


class Version(msgspec.Struct):
    """The page's changes of one day (``status`` latest for the newest day, else previous)."""

    date: str
    status: str
    changes: list[str]


class ChangelogMeta(msgspec.Struct):
    as_of_position: int
    freshness_seconds: float
    stale: bool | msgspec.UnsetType = msgspec.UNSET


class ChangelogPage(msgspec.Struct):
    latest_version: str
    versions: list[Version]
    changes: list[Change]
    next_cursor: str | None
    has_more: bool
    page_size: int
    meta: ChangelogMeta


@get("/v1/changelog", opt=READ, responses=errors(401, 422, 503))
async def changelog(
    tenant: NamedDependency[str],
    changelog: NamedDependency[Changelog],
    read_after: NamedDependency[ReadAfter],
    limit: Annotated[int, QueryParameter(description="changes per page", ge=1, le=500)] = 50,
    cursor: Annotated[
        str | None, QueryParameter(description="the next_cursor of the previous page")
    ] = None,
    entity_type: Annotated[
        str | None, QueryParameter(description="only this stream type: " + ", ".join(STREAM_TYPES))
    ] = None,
    entity_id: Annotated[str | None, QueryParameter(description="only this entity's stream")] = None,
    event_type: Annotated[
        str | None, QueryParameter(description="only these event types (comma-separated)")
    ] = None,
    since: Annotated[
        str | None, QueryParameter(description="only events that occurred at or after this ISO-8601 time")
    ] = None,
) -> ChangelogPage:
    """The data version (``latest_version``) is the applied position the page was read at; only
    applied events are listed."""
    before: int | None = None
    if cursor:
        try:
            before = int(cursor)
        except ValueError as exc:
            message = "cursor must be a next_cursor from a previous page"
            raise ApiError(422, "invalid_cursor", message) from exc
    entity_type = entity_type or None
    if entity_type is not None and entity_type not in STREAM_TYPES:
        raise ApiError(422, "invalid_entity_type", f"unknown entity type {entity_type!r}",
                       {"available": list(STREAM_TYPES)})  # fmt: skip
    event_types = [t.strip() for t in event_type.split(",") if t.strip()] if event_type else None
    if event_types and (unknown := [t for t in event_types if t not in EVENT_TYPES]):
        raise ApiError(
            422, "invalid_event_type", f"unknown event types {unknown}", {"available": list(EVENT_TYPES)}
        )
    since_at = None
    if since:
        try:
            since_at = datetime.fromisoformat(since.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ApiError(422, "invalid_since", "since must be an ISO-8601 timestamp") from exc
        if since_at.tzinfo is None:
            since_at = since_at.replace(tzinfo=UTC)
    fresh = await read_after.wait()
    page = await to_thread.run_sync(
        lambda: changelog.page(
            tenant, limit, before, entity_type, entity_id or None, event_types, since_at, fresh
        )
    )
    return msgspec.convert(page, ChangelogPage)


CHANGELOG_ROUTES = [changelog]

"""``GET /v1/entity/order/{id}/timeline``: every event of an order, read from the event store, with
positions, times and the durations between its lifecycle stages (readmodels.time_travel.order_timeline;
``as_of`` optional)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from anyio import to_thread
from litestar import get
from litestar.di import NamedDependency
from litestar.params import PathParameter, QueryParameter

from connectors.event_store import PostgresEventStore
from readmodels.time_travel import order_timeline
from services.api.dependencies import READ
from services.api.errors import ApiError
from services.api.openapi import errors


class TimelineEvent(msgspec.Struct):
    position: int
    stream_version: int
    event_id: str
    event_type: str
    stage: str | None  # the lifecycle stage the event reached (placed, confirmed, paid, ...)
    occurred_at: datetime
    recorded_at: datetime
    seconds_since_previous: float | None
    seconds_since_placed: float | None
    data: dict[str, Any]
    correlation_id: Any
    command_id: Any
    projected: bool  # false: the event is invalid (dead-lettered, never projected)
    invalid_reason: str | msgspec.UnsetType = msgspec.UNSET


class Stage(msgspec.Struct):
    stage: str
    at: datetime
    position: int


class StageDuration(msgspec.Struct):
    from_: str = msgspec.field(name="from")
    to: str
    seconds: float


class TimelineMeta(msgspec.Struct):
    as_of: str
    is_historical: bool
    as_of_position: int
    source: str


class OrderTimeline(msgspec.Struct):
    entity_type: str
    entity_id: str
    events: list[TimelineEvent]
    event_count: int
    stages: list[Stage]
    stage_durations: list[StageDuration]
    total_seconds: float
    current_stage: str | None
    first_position: int
    last_position: int
    meta: TimelineMeta


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


# A static ``order`` segment would shadow ``/v1/entity/{entity_type}/{entity_id}`` for orders (the
# router does not backtrack), so the path keeps the entity route's parameters and serves orders only.
@get("/v1/entity/{entity_type:str}/{entity_id:str}/timeline", opt=READ, responses=errors(401, 404, 422))
async def order_timeline_route(
    tenant: NamedDependency[str],
    store: NamedDependency[PostgresEventStore],
    entity_type: Annotated[str, PathParameter(description="order (the only type with a timeline)")],
    entity_id: Annotated[str, PathParameter(description="an order id")],
    as_of: Annotated[
        datetime | None, QueryParameter(description="the timeline as it was at this ISO-8601 instant")
    ] = None,
) -> OrderTimeline:
    """Read from the event store itself: complete up to the order's last event, whatever the read models
    have applied (``meta.as_of_position`` is that event's position)."""
    if entity_type != "order":
        raise ApiError(
            404,
            "no_timeline",
            f"timelines are served for orders, not {entity_type!r}",
            {"available": ["order"]},
        )
    if as_of is not None:
        if as_of.tzinfo is None:
            as_of = as_of.replace(tzinfo=UTC)
        if as_of > datetime.now(UTC):
            raise ApiError(422, "as_of_in_future", "as_of must not be in the future")
    found = await to_thread.run_sync(order_timeline, store, tenant, entity_id, as_of)
    if found is None:
        raise ApiError(404, "entity_not_found", f"order {entity_id!r} not found")
    found["meta"] = {
        "as_of": _iso(as_of) if as_of is not None else _iso(datetime.now(UTC)),
        "is_historical": as_of is not None,
        "as_of_position": found["last_position"],
        "source": "event_store",
    }
    return msgspec.convert(found, OrderTimeline)


TIMELINE_ROUTES = [order_timeline_route]

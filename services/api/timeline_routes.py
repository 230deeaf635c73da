"""``GET /v1/entity/order/{id}/timeline``: every event of an order, read from the event store, with
positions, times and the durations between its lifecycle stages (``as_of`` optional)."""

from __future__ import annotations

from typing import Any

from anyio import to_thread
from litestar import Request, Response, get

from readmodels.time_travel import order_timeline
from services.api.context import json_response, runtime_of, tenant_of
from services.api.errors import ApiError
from services.api.read_routes import _iso, _now_iso, parse_as_of


# A static ``order`` segment would shadow ``/v1/entity/{entity_type}/{entity_id}`` for orders (the
# router does not backtrack), so the path keeps the entity route's parameters and serves orders only.
@get("/v1/entity/{entity_type:str}/{entity_id:str}/timeline")
async def order_timeline_route(
    request: Request[Any, Any, Any], entity_type: str, entity_id: str
) -> Response[bytes]:
    tenant = tenant_of(request)
    runtime = runtime_of(request)
    if entity_type != "order":
        raise ApiError(
            404,
            "no_timeline",
            f"timelines are served for orders, not {entity_type!r}",
            {"available": ["order"]},
        )
    as_of = parse_as_of(request.query_params.get("as_of"))
    found = await to_thread.run_sync(order_timeline, runtime.store, tenant, entity_id, as_of)
    if found is None:
        raise ApiError(404, "entity_not_found", f"order {entity_id!r} not found")
    # read from the event store itself: complete up to the order's last event, whatever the read models
    found["meta"] = {
        "as_of": _iso(as_of) if as_of is not None else _now_iso(),
        "is_historical": as_of is not None,
        "as_of_position": found["last_position"],
        "source": "event_store",
    }
    return json_response(found)


TIMELINE_ROUTES = [order_timeline_route]

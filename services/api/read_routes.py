"""Read side: metrics, entities, catalog (wire-compatible with existing clients, API.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from anyio import to_thread
from litestar import Request, Response, get

from domain.events import STREAM_TYPES
from projections.entities import fold_entity
from readmodels.entities import get_entity
from readmodels.metrics import METRICS, WINDOWS, compute_metric
from services.api.context import json_response, runtime_of, tenant_of
from services.api.errors import ApiError
from services.catalog import build_catalog
from services.runtime import Runtime


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_as_of(raw: str | None) -> datetime | None:
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ApiError(422, "invalid_as_of", "as_of must be an ISO-8601 timestamp") from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if value > datetime.now(UTC):
        raise ApiError(422, "as_of_in_future", "as_of must not be in the future")
    return value


async def await_position(request: Request[Any, Any, Any], runtime: Runtime) -> bool:
    """Honour ``min_position``: wait (bounded) until the read model has applied it.

    Returns False only when the client accepted a stale answer (``allow_stale=true``).
    """
    raw = request.query_params.get("min_position")
    if raw is None:
        return True
    try:
        position = int(raw)
    except ValueError as exc:
        raise ApiError(422, "invalid_min_position", "min_position must be an integer") from exc
    timeout = runtime.settings.min_position_timeout_s
    if raw_timeout := request.query_params.get("timeout_ms"):
        try:
            timeout = min(timeout, max(0.0, int(raw_timeout) / 1000))
        except ValueError as exc:
            raise ApiError(422, "invalid_timeout", "timeout_ms must be an integer") from exc
    if await runtime.wait_for_position(position, timeout):
        return True
    if request.query_params.get("allow_stale") in ("1", "true"):
        return False
    raise ApiError(
        503,
        "position_not_yet_applied",
        f"read model has applied position {runtime.watermark}, not yet {position}",
        {"as_of_position": runtime.watermark, "min_position": position},
        headers={"Retry-After": "1"},
    )


def _meta(runtime: Runtime, as_of: datetime | None, fresh: bool) -> dict[str, Any]:
    freshness = runtime.freshness_seconds()
    meta: dict[str, Any] = {
        "as_of": _iso(as_of or datetime.now(UTC)),
        "is_historical": as_of is not None,
        "freshness_seconds": freshness,
        "as_of_position": runtime.watermark,
    }
    if not fresh:
        meta["stale"] = True
    return meta


@get("/v1/metrics/{metric_name:str}")
async def metric(request: Request[Any, Any, Any], metric_name: str) -> Response[bytes]:
    tenant = tenant_of(request)
    runtime = runtime_of(request)
    spec = METRICS.get(metric_name)
    if spec is None:
        raise ApiError(404, "unknown_metric", f"unknown metric {metric_name!r}", {"available": sorted(METRICS)})
    window = request.query_params.get("window") or spec.windows[0]
    if window not in spec.windows:
        raise ApiError(
            422,
            "invalid_window",
            f"metric {metric_name} offers windows {', '.join(spec.windows)}, not {window!r}",
            {"available_windows": list(spec.windows)},
        )
    currency = (request.query_params.get("currency") or runtime.settings.reporting_currency).upper()
    as_of = parse_as_of(request.query_params.get("as_of"))
    fresh = await await_position(request, runtime)
    key = (tenant, metric_name, window, currency)
    cached = None if as_of else runtime.cache.get_metric(key)
    if cached is None:
        gen = runtime.cache.generation()
        cached = await to_thread.run_sync(_compute_metric, runtime, tenant, metric_name, window, currency, as_of)
        if as_of is None:
            runtime.cache.put_metric(key, cached, gen)
    body = dict(cached)
    body["meta"] = _meta(runtime, as_of, fresh)
    return json_response(body)


def _compute_metric(
    runtime: Runtime, tenant: str, name: str, window: str, currency: str, as_of: datetime | None
) -> dict[str, Any]:
    now = as_of or datetime.now(UTC)
    rejected = 0
    if name == "error_rate":
        rejected = runtime.store.count_rejections(tenant, since=now - WINDOWS[window], until=now)
    result = compute_metric(runtime.clickhouse, tenant, name, window, currency, now, rejected_commands=rejected)
    return {
        "metric_name": name,
        "value": result.value,
        "unit": result.unit,
        "window": window,
        "computed_at": _iso(datetime.now(UTC)),
        "components": result.components,
    }


@get("/v1/entity/{entity_type:str}/{entity_id:str}")
async def entity(request: Request[Any, Any, Any], entity_type: str, entity_id: str) -> Response[bytes]:
    tenant = tenant_of(request)
    runtime = runtime_of(request)
    if entity_type not in STREAM_TYPES:
        raise ApiError(404, "unknown_entity_type", f"unknown entity type {entity_type!r}", {"available": list(STREAM_TYPES)})
    as_of = parse_as_of(request.query_params.get("as_of"))
    fresh = await await_position(request, runtime)
    key = (tenant, entity_type, entity_id)
    found = None if as_of else runtime.cache.get_entity(key)
    if found is None:
        gen = runtime.cache.generation()
        if as_of is None:
            found = await to_thread.run_sync(_load_entity, runtime, tenant, entity_type, entity_id)
            if found is not None:
                runtime.cache.put_entity(key, found, gen)
        else:
            found = await to_thread.run_sync(_fold_entity, runtime, tenant, entity_type, entity_id, as_of)
    if found is None:
        raise ApiError(404, "entity_not_found", f"{entity_type} {entity_id!r} not found")
    meta = _meta(runtime, as_of, fresh)
    body = {
        "entity_type": entity_type,
        "entity_id": entity_id,
        "data": found["data"],
        "last_updated": found["last_updated"],
        "freshness_seconds": meta["freshness_seconds"],
        "meta": meta,
    }
    return json_response(body)


def _load_entity(runtime: Runtime, tenant: str, entity_type: str, entity_id: str) -> dict[str, Any] | None:
    row = get_entity(runtime.clickhouse, tenant, entity_type, entity_id)
    if row is None:
        return None
    return {"data": row.data, "last_updated": _iso(row.last_updated), "version": row.version}


def _fold_entity(
    runtime: Runtime, tenant: str, entity_type: str, entity_id: str, as_of: datetime
) -> dict[str, Any] | None:
    """Time travel: fold the event store up to ``as_of`` (not the current row filtered by time)."""
    events = runtime.store.read_entity_events_until(tenant, entity_type, entity_id, as_of)
    if not events:
        return None
    data = fold_entity(entity_type, entity_id, events)
    if data is None:
        return None
    return {"data": data, "last_updated": _iso(events[-1].occurred_at), "version": events[-1].position}


@get("/v1/catalog")
async def catalog(request: Request[Any, Any, Any]) -> Response[bytes]:
    tenant_of(request)
    return json_response(build_catalog())


READ_ROUTES = [metric, entity, catalog]

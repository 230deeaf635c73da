"""Read side: metrics, entities, catalog (wire-compatible with existing clients, API.md)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable
from datetime import UTC, datetime
from typing import Any

import msgspec
from anyio import to_thread
from litestar import Request, Response, get
from litestar.types import Receive, Scope, Send

from domain.events import STREAM_TYPES
from projections.entities import fold_entity
from projections.rows import invalid_reason
from readmodels.catalog import build_catalog
from readmodels.contract_registry import DIMENSION_COLUMNS
from readmodels.entities import get_entity
from readmodels.metrics import METRICS, WINDOWS, MetricDef, MetricResult, compute_metric
from readmodels.schema import METRIC_TABLES
from readmodels.time_travel import TimeTravelTooLarge, historical_metric
from services.api.context import json_response, runtime_of, tenant_of
from services.api.errors import ApiError
from services.read_cache import EntityKey, MetricKey, ReadCache
from services.runtime import Runtime

log = logging.getLogger(__name__)
_encode = msgspec.json.Encoder().encode
_JSON_HEADERS = [(b"content-type", b"application/json")]


class _Json:
    """A bare ASGI 200 JSON response: the read hot path skips Litestar's Response conversion."""

    __slots__ = ("body",)

    def __init__(self, body: Any) -> None:
        self.body = _encode(body)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*_JSON_HEADERS, (b"content-length", str(len(self.body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": self.body, "more_body": False})


# ---- single flight: concurrent misses of one key share one read-model query --------------------
class _Flight:
    __slots__ = ("gen", "task")

    def __init__(self, gen: int, task: asyncio.Task[Any]) -> None:
        self.gen = gen
        self.task = task


def _flight(
    cache: ReadCache,
    key: Hashable,
    valid_since: Callable[[int], bool],
    compute: Callable[[], Any],
    store: Callable[[Any, int], None],
) -> asyncio.Task[Any]:
    """The in-flight computation of ``key``, started now unless one is running that began after the
    last invalidation of ``key`` (``valid_since(flight.gen)``): joining it then is as fresh as starting
    anew, so a reader that passed ``min_position`` never gets a value older than that position."""
    flights = cache.flights
    current = flights.get(key)
    if current is not None and valid_since(current.gen):
        return current.task
    gen = cache.generation()

    async def run() -> Any:
        value = await to_thread.run_sync(compute)
        store(value, gen)
        return value

    task = asyncio.ensure_future(run())
    flight = _Flight(gen, task)
    flights[key] = flight

    def done(t: asyncio.Task[Any]) -> None:
        if flights.get(key) is flight:
            del flights[key]
        if not t.cancelled() and t.exception() is not None:
            log.debug("read of %r failed: %s", key, t.exception())

    task.add_done_callback(done)
    return task


async def _metric_value(runtime: Runtime, key: MetricKey, compute: Callable[[], Any]) -> Any:
    cache = runtime.cache
    value, refresh_due = cache.lookup_metric(key)
    if value is not None and not refresh_due:
        return value

    def valid(gen: int) -> bool:
        return cache.metric_valid_since(key, gen)

    def store(v: Any, gen: int) -> None:
        cache.put_metric(key, v, gen)

    task = _flight(cache, ("metric", key), valid, compute, store)
    if value is not None:  # refresh-ahead: serve the still-valid entry, the flight refreshes it
        return value
    return await asyncio.shield(task)


async def _entity_value(runtime: Runtime, key: EntityKey, compute: Callable[[], Any]) -> Any:
    cache = runtime.cache
    found = cache.get_entity(key)
    if found is not None:
        return found

    def valid(gen: int) -> bool:
        return cache.entity_valid_since(key, gen)

    def store(v: Any, gen: int) -> None:
        if v is not None:
            cache.put_entity(key, v, gen)

    return await asyncio.shield(_flight(cache, ("entity", key), valid, compute, store))


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


_NOW_ISO: list[Any] = [0, ""]  # (epoch ms, its ISO text): many reads per millisecond share one


def _now_iso() -> str:
    now = time.time()
    ms = int(now * 1000)
    if _NOW_ISO[0] != ms:
        text = datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z")
        _NOW_ISO[0], _NOW_ISO[1] = ms, text
        return text
    return str(_NOW_ISO[1])


def _meta(runtime: Runtime, as_of: datetime | None, fresh: bool) -> dict[str, Any]:
    freshness = runtime.freshness_seconds()
    meta: dict[str, Any] = {
        "as_of": _iso(as_of) if as_of is not None else _now_iso(),
        "is_historical": as_of is not None,
        "freshness_seconds": freshness,
        "as_of_position": runtime.watermark,
    }
    if not fresh:
        meta["stale"] = True
    return meta


@get("/v1/metrics/{metric_name:str}")
async def metric(request: Request[Any, Any, Any], metric_name: str) -> _Json:
    tenant = tenant_of(request)
    runtime = runtime_of(request)
    spec = METRICS.get(metric_name)
    if spec is None:
        raise ApiError(
            404, "unknown_metric", f"unknown metric {metric_name!r}", {"available": sorted(METRICS)}
        )
    window = request.query_params.get("window") or spec.windows[0]
    if window not in spec.windows:
        raise ApiError(
            422,
            "invalid_window",
            f"metric {metric_name} offers windows {', '.join(spec.windows)}, not {window!r}",
            {"available_windows": list(spec.windows)},
        )
    currency = (request.query_params.get("currency") or runtime.settings.reporting_currency).upper()
    filters = dimension_filters(request, spec)
    as_of = parse_as_of(request.query_params.get("as_of"))
    fresh = await await_position(request, runtime)
    if as_of is not None:
        cached = await to_thread.run_sync(
            _compute_metric, runtime, tenant, metric_name, window, currency, as_of, filters
        )
    else:
        variant = currency if not filters else f"{currency}|{sorted(filters.items())}"
        cached = await _metric_value(
            runtime,
            (tenant, metric_name, window, variant),
            lambda: _compute_metric(runtime, tenant, metric_name, window, currency, None, filters),
        )
    body = dict(cached)
    body["meta"] = _meta(runtime, as_of, fresh)
    return _Json(body)


def dimension_filters(request: Request[Any, Any, Any], spec: MetricDef) -> dict[str, str]:
    """Dimension filters from the query string (422 for a dimension the metric does not offer). A
    money metric's ``currency`` selects the reported currency, and a metric without a currency
    dimension ignores ``currency`` (existing clients send it to every metric)."""
    filters: dict[str, str] = {}
    for dim in DIMENSION_COLUMNS:
        value = request.query_params.get(dim)
        if value is None or (dim == "currency" and (spec.money or dim not in spec.dimensions)):
            continue
        if dim not in spec.dimensions:
            raise ApiError(
                422,
                "invalid_dimension",
                f"metric {spec.name} offers dimensions {', '.join(spec.dimensions) or 'none'}, not {dim!r}",
                {"dimensions": list(spec.dimensions)},
            )
        filters[dim] = value.upper() if dim == "currency" else value
    return filters


def flush_for(runtime: Runtime, spec: MetricDef) -> None:
    """A metric over a table the serving sink writes lazily reads after catching it up."""
    if not set(spec.tables) <= METRIC_TABLES:
        _flush_serving(runtime)


def _compute_metric(
    runtime: Runtime,
    tenant: str,
    name: str,
    window: str,
    currency: str,
    as_of: datetime | None,
    filters: dict[str, str] | None = None,
) -> dict[str, Any]:
    now = as_of or datetime.now(UTC)
    rejected = 0
    if as_of is None:
        flush_for(runtime, METRICS[name])
    if name == "error_rate":
        rejected = runtime.store.count_rejections(tenant, since=now - WINDOWS[window], until=now)
    if as_of is not None:  # time travel: the window ending at as_of, over the events up to as_of
        result = _historical_metric(runtime, tenant, name, window, currency, as_of, rejected, filters)
    else:
        result = compute_metric(
            runtime.clickhouse,
            tenant,
            name,
            window,
            currency,
            now,
            rejected_commands=rejected,
            filters=filters,
        )
    return {
        "metric_name": name,
        "value": result.value,
        "unit": result.unit,
        "window": window,
        "computed_at": _iso(datetime.now(UTC)),
        "components": result.components,
    }


def _historical_metric(
    runtime: Runtime,
    tenant: str,
    name: str,
    window: str,
    currency: str,
    as_of: datetime,
    rejected: int,
    filters: dict[str, str] | None,
) -> MetricResult:
    try:
        return historical_metric(
            runtime.store, runtime.clickhouse, tenant, name, window, currency, as_of, rejected, filters,
            max_events=runtime.settings.time_travel_max_events,
        )
    except TimeTravelTooLarge as exc:
        raise ApiError(422, "time_travel_too_large", str(exc), {"max_events": exc.max_events}) from exc


@get("/v1/entity/{entity_type:str}/{entity_id:str}")
async def entity(request: Request[Any, Any, Any], entity_type: str, entity_id: str) -> _Json:
    tenant = tenant_of(request)
    runtime = runtime_of(request)
    if entity_type not in STREAM_TYPES:
        raise ApiError(
            404,
            "unknown_entity_type",
            f"unknown entity type {entity_type!r}",
            {"available": list(STREAM_TYPES)},
        )
    as_of = parse_as_of(request.query_params.get("as_of"))
    fresh = await await_position(request, runtime)
    if as_of is None:
        found = await _entity_value(
            runtime,
            (tenant, entity_type, entity_id),
            lambda: _load_entity(runtime, tenant, entity_type, entity_id),
        )
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
    return _Json(body)


def _flush_serving(runtime: Runtime) -> None:
    """The serving sink writes the tables metrics don't read (events, order lines, products, users,
    payments) lazily; a reader of those catches them up first (a no-op when nothing is pending)."""
    runner = runtime.serving_runner
    if runner is not None:
        runner.sink.flush()


def _load_entity(runtime: Runtime, tenant: str, entity_type: str, entity_id: str) -> dict[str, Any] | None:
    _flush_serving(runtime)
    row = get_entity(runtime.clickhouse, tenant, entity_type, entity_id)
    if row is None:
        return None
    return {"data": row.data, "last_updated": _iso(row.last_updated), "version": row.version}


def _fold_entity(
    runtime: Runtime, tenant: str, entity_type: str, entity_id: str, as_of: datetime
) -> dict[str, Any] | None:
    """Time travel: fold the event store up to ``as_of`` (not the current row filtered by time)."""
    events = runtime.store.read_entity_events_until(tenant, entity_type, entity_id, as_of)
    events = [e for e in events if invalid_reason(e) is None]  # dead-lettered: never projected
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

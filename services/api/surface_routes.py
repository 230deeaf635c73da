"""The rest of the read surface: batch, search, lineage, changelog and SLOs (API.md, "Also part of the
product"). The SSE stream is in stream_routes.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import msgspec
from anyio import to_thread
from litestar import Request, Response, get, post
from litestar.types import ASGIApp, Message

from connectors.event_store import EVENT_COLUMNS, row_to_event
from domain.events import EVENT_TYPES, STREAM_TYPES, RecordedEvent
from projections.entities import ENTITY_TABLES
from readmodels.contract_registry import REGISTRY
from services.api.context import json_body, json_response, runtime_of, tenant_of
from services.api.errors import ApiError
from services.api.read_routes import _flush_serving, await_position
from services.event_stream import AppliedEventHub, iso
from services.runtime import Runtime
from services.search_index import SearchIndex, row_fields
from services.slo import SloTracker

MAX_BATCH = 20
_SAFE_ID = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:@")


def _state(request: Request[Any, Any, Any], name: str) -> Any:
    value = request.app.state.get(name)
    if value is None:
        raise ApiError(503, "not_configured", f"{name} is not configured in this process")
    return value


def _int_param(request: Request[Any, Any, Any], name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ApiError(422, f"invalid_{name}", f"{name} must be an integer") from exc
    if not lo <= value <= hi:
        raise ApiError(422, f"invalid_{name}", f"{name} must be between {lo} and {hi}")
    return value


def _meta(runtime: Runtime) -> dict[str, Any]:
    return {"as_of_position": runtime.watermark, "freshness_seconds": runtime.freshness_seconds()}


# ---- POST /v1/batch ---------------------------------------------------------------------------
class _SubResponse:
    __slots__ = ("body", "status")

    def __init__(self) -> None:
        self.status = 500
        self.body = bytearray()


async def _dispatch(
    app: ASGIApp, parent: Request[Any, Any, Any], method: str, path: str, query: dict[str, Any], body: bytes
) -> _SubResponse:
    """Run one item as a request through the application's own routes (same auth, tenant and
    validation as a direct call) without a network round trip."""
    headers = [(b"x-api-key", (parent.headers.get("x-api-key") or "").encode())]
    if cid := parent.headers.get("x-correlation-id"):
        headers.append((b"x-correlation-id", cid.encode()))
    if body:
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": quote(path).encode(),
        "query_string": urlencode({k: v for k, v in query.items() if v is not None}).encode(),
        "root_path": "",
        "headers": headers,
        "client": parent.scope.get("client"),
        "server": parent.scope.get("server"),
        "app": parent.app,
        "litestar_app": parent.app,
        "state": {},
    }
    sent = False
    never = asyncio.Event()

    async def receive() -> Any:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await never.wait()
        return {"type": "http.disconnect"}  # pragma: no cover

    out = _SubResponse()

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            out.status = message["status"]
        elif message["type"] == "http.response.body":
            out.body += message.get("body", b"")

    await app(scope, receive, send)  # type: ignore[arg-type]
    return out


def _safe_id(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 128 or not set(value) <= _SAFE_ID:
        raise ValueError(f"param {name!r} must be a non-empty id (letters, digits, - _ . : @)")
    return value


_PASS = ("as_of", "min_position", "timeout_ms", "allow_stale")


def _item_request(kind: str, params: dict[str, Any]) -> tuple[str, str, dict[str, Any], bytes]:
    passthrough = {k: params.get(k) for k in _PASS}
    if kind == "entity":
        etype = _safe_id(params.get("entity_type"), "entity_type")
        eid = _safe_id(params.get("entity_id"), "entity_id")
        return "GET", f"/v1/entity/{etype}/{eid}", passthrough, b""
    if kind == "metric":
        name = _safe_id(params.get("name") or params.get("metric_name"), "name")
        window = params.get("window", "1h")
        if not isinstance(window, str):
            raise ValueError("param 'window' must be a string")
        query = {"window": window, **passthrough}
        for dim in ("currency", "channel", "category", "product", "method"):
            query[dim] = params.get(dim)
        return "GET", f"/v1/metrics/{name}", query, b""
    if kind == "query":
        return "POST", "/v1/query", {}, msgspec.json.encode(params)
    raise ValueError(f"type must be one of entity, metric, query; not {kind!r}")


async def _batch_item(app: ASGIApp, request: Request[Any, Any, Any], item: Any, index: int) -> dict[str, Any]:
    if not isinstance(item, dict):
        return {"id": str(index), "status": "error", "data": None, "error": "each request must be an object",
                "error_code": "invalid_item", "status_code": 422}  # fmt: skip
    item_id = item.get("id")
    item_id = str(item_id) if item_id is not None else str(index)
    params = item.get("params") or {}
    try:
        if not isinstance(params, dict):
            raise ValueError("params must be an object")
        method, path, query, body = _item_request(str(item.get("type")), params)
    except ValueError as exc:
        return {"id": item_id, "status": "error", "data": None, "error": str(exc),
                "error_code": "invalid_item", "status_code": 422}  # fmt: skip
    started = time.perf_counter()
    sub = await _dispatch(app, request, method, path, query, bytes(body))
    took = round((time.perf_counter() - started) * 1000, 3)
    try:
        payload = msgspec.json.decode(bytes(sub.body)) if sub.body else None
    except msgspec.DecodeError:
        payload = None
    if 200 <= sub.status < 300:
        return {"id": item_id, "status": "ok", "data": payload, "error": None, "status_code": sub.status,
                "duration_ms": took}  # fmt: skip
    detail = payload.get("detail") if isinstance(payload, dict) else None
    code = (payload.get("error") or {}).get("code") if isinstance(payload, dict) else None
    return {"id": item_id, "status": "error", "data": None, "error": detail or f"HTTP {sub.status}",
            "error_code": code, "status_code": sub.status, "duration_ms": took}  # fmt: skip


@post("/v1/batch", status_code=200)
async def batch(request: Request[Any, Any, Any]) -> Response[bytes]:
    tenant_of(request)
    body = await json_body(request)
    items = body.get("requests")
    if not isinstance(items, list):
        raise ApiError(422, "validation_failed", "requests must be a list of {id, type, params}")
    if len(items) > MAX_BATCH:
        raise ApiError(
            422, "batch_too_large", f"at most {MAX_BATCH} requests per batch, not {len(items)}",
            {"max": MAX_BATCH, "received": len(items)},
        )  # fmt: skip
    app = _state(request, "inner_asgi")
    started = time.perf_counter()
    results = await asyncio.gather(*(_batch_item(app, request, item, i) for i, item in enumerate(items)))
    return json_response(
        {"results": list(results), "duration_ms": round((time.perf_counter() - started) * 1000, 3)}
    )


# ---- GET /v1/search ---------------------------------------------------------------------------
def _seed(runtime: Runtime, index: SearchIndex, tenant: str) -> None:
    _flush_serving(runtime)
    for entity_type, table in ENTITY_TABLES.items():
        rows = runtime.clickhouse.select_rows(table, tenant)
        index.seed(tenant, entity_type, (row_fields(entity_type, r) for r in rows))


async def _ensure_indexed(
    request: Request[Any, Any, Any], runtime: Runtime, index: SearchIndex, tenant: str
) -> None:
    if index.tracking(tenant):
        return
    seeding: dict[str, asyncio.Task[None]] = request.app.state.setdefault("search_seeding", {})
    task = seeding.get(tenant)
    if task is None:
        if not index.start(tenant):  # started by a seeding that failed: start over
            index.forget(tenant)
            index.start(tenant)

        async def run() -> None:
            try:
                await to_thread.run_sync(_seed, runtime, index, tenant)
                index.seeded(tenant)
            except BaseException:
                index.forget(tenant)
                raise
            finally:
                seeding.pop(tenant, None)

        task = asyncio.ensure_future(run())
        seeding[tenant] = task
    await asyncio.shield(task)


@get("/v1/search")
async def search(request: Request[Any, Any, Any]) -> Response[bytes]:
    tenant = tenant_of(request)
    runtime = runtime_of(request)
    index: SearchIndex = _state(request, "search_index")
    q = (request.query_params.get("q") or "").strip()
    if len(q) < 2:
        raise ApiError(422, "invalid_query", "q must be at least 2 characters")
    if len(q) > 256:
        raise ApiError(422, "invalid_query", "q must be at most 256 characters")
    limit = _int_param(request, "limit", 10, 1, 50)
    types: set[str] | None = None
    raw_types = request.query_params.getall("entity_types", [])
    if raw_types:
        types = {t.strip().lower() for raw in raw_types for t in raw.split(",") if t.strip()}
        unknown = types - set(ENTITY_TABLES)
        if unknown:
            raise ApiError(422, "invalid_entity_types", f"unknown entity types {sorted(unknown)}",
                           {"available": list(ENTITY_TABLES)})  # fmt: skip
    fresh = await await_position(request, runtime)
    await _ensure_indexed(request, runtime, index, tenant)
    results = index.search(tenant, q, limit, types)
    meta = _meta(runtime)
    if not fresh:
        meta["stale"] = True
    meta["indexed"] = index.stats(tenant)
    return json_response({"query": q, "results": results, "meta": meta})


# ---- GET /v1/lineage/{type}/{id} ---------------------------------------------------------------
def _dead_letters(runtime: Runtime, tenant: str, positions: list[int]) -> dict[int, dict[str, Any]]:
    if not positions:
        return {}
    with runtime.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT position, pipeline, stage, reason FROM dead_letters "
            "WHERE tenant_id = %(t)s AND position = ANY(%(p)s)",
            {"t": tenant, "p": positions},
        ).all()
    return {int(r[0]): {"pipeline": r[1], "stage": r[2], "reason": r[3]} for r in rows}


def _ms(a: datetime | float | None, b: datetime | float | None) -> float | None:
    if a is None or b is None:
        return None
    ta = a.timestamp() if isinstance(a, datetime) else a
    tb = b.timestamp() if isinstance(b, datetime) else b
    return round((tb - ta) * 1000, 3)


def _stats(values: list[float]) -> dict[str, Any] | None:
    if not values:
        return None
    ordered = sorted(values)
    return {
        "count": len(ordered),
        "min_ms": ordered[0],
        "p50_ms": ordered[len(ordered) // 2],
        "max_ms": ordered[-1],
    }


def lineage_report(
    runtime: Runtime, hub: AppliedEventHub | None, tenant: str, entity_type: str, entity_id: str
) -> dict[str, Any] | None:
    watermark = runtime.watermark
    now = datetime.now(UTC)
    events = runtime.store.read_entity_events_until(tenant, entity_type, entity_id, now)
    if not events:
        return None
    _flush_serving(runtime)
    table = ENTITY_TABLES[entity_type]
    row = runtime.clickhouse.get_row(table, (tenant, entity_id))
    row_version = int(row["version"]) if row is not None else None
    dead = _dead_letters(runtime, tenant, [e.position for e in events])
    applied_at = hub.applied_at(e.position for e in events) if hub is not None else {}
    lake = runtime.lake_runner
    lake_wm = lake.status.watermark if lake is not None else None
    contract = REGISTRY.current(entity_type)

    items: list[dict[str, Any]] = []
    store_lag: list[float] = []
    apply_lag: list[float] = []
    for e in events:
        at = applied_at.get(e.position)
        status = (
            "dead_lettered" if e.position in dead else "applied" if e.position <= watermark else "pending"
        )
        entry: dict[str, Any] = {
            "position": e.position,
            "event_id": str(e.event_id),
            "type": e.event_type,
            "stream_type": e.stream_type,
            "stream_id": e.stream_id,
            "stream_version": e.stream_version,
            "schema_version": e.schema_version,
            "occurred_at": iso(e.occurred_at),
            "recorded_at": iso(e.recorded_at),
            "applied_at": iso(datetime.fromtimestamp(at, UTC)) if at is not None else None,
            "status": status,
            "correlation_id": e.metadata.get("correlation_id"),
            "causation_id": e.metadata.get("causation_id"),
            "actor": e.metadata.get("actor"),
            "durations_ms": {
                "occurred_to_recorded": _ms(e.occurred_at, e.recorded_at),
                "recorded_to_applied": _ms(e.recorded_at, at),
            },
        }
        if e.stream_type == entity_type and e.stream_id == entity_id and row_version is not None:
            entry["in_read_model_row"] = e.position <= row_version
        if lake_wm is not None:
            entry["in_lake"] = e.position <= lake_wm and status == "applied"
        if e.position in dead:
            entry["dead_letter"] = dead[e.position]
        items.append(entry)
        if (d := entry["durations_ms"]["occurred_to_recorded"]) is not None:
            store_lag.append(d)
        if (d := entry["durations_ms"]["recorded_to_applied"]) is not None:
            apply_lag.append(d)

    applied = [e for e in events if e.position <= watermark and e.position not in dead]
    last = applied[-1] if applied else None
    last_at = applied_at.get(last.position) if last is not None else None
    quality = round(1 - len(dead) / len(events), 4)
    actors = sorted({str(e.metadata.get("actor")) for e in events if e.metadata.get("actor")})
    distributed = runtime.mode == "distributed"
    nodes: list[dict[str, Any]] = [
        {
            "layer": "source",
            "system": ", ".join(actors) or "unknown",
            "table_or_topic": "commands",
            "processed_at": iso(events[0].occurred_at),
            "quality_score": None,
            "events": len(events),
        },
        {
            "layer": "event_store",
            "system": "postgres",
            "table_or_topic": "events",
            "processed_at": iso(events[-1].recorded_at),
            "quality_score": None,
            "position": events[-1].position,
            "duration_ms": _stats(store_lag),
        },
        {
            "layer": "validation",
            "system": "flink" if distributed else "embedded projector",
            "table_or_topic": "dead_letters" if dead else "events",
            "processed_at": iso(datetime.fromtimestamp(last_at, UTC)) if last_at else None,
            "quality_score": quality,
            "rejected": len(dead),
        },
        {
            "layer": "serving",
            "system": "clickhouse",
            "table_or_topic": table,
            "processed_at": iso(datetime.fromtimestamp(last_at, UTC)) if last_at else None,
            "quality_score": 1.0 if row is not None else 0.0,
            "position": row_version,
            "duration_ms": _stats(apply_lag),
            "tables": list(contract.tables),
        },
    ]
    if lake is not None:
        nodes.append({
            "layer": "lake",
            "system": "iceberg",
            "table_or_topic": "events",
            "processed_at": None,
            "quality_score": None,
            "position": lake_wm,
            "complete": last is not None and lake_wm is not None and lake_wm >= last.position,
        })  # fmt: skip
    nodes.append({
        "layer": "api",
        "system": "litestar",
        "table_or_topic": f"/v1/entity/{entity_type}/{entity_id}",
        "processed_at": iso(now),
        "quality_score": None,
        "position": watermark,
    })  # fmt: skip
    last_updated = row.get("updated_at") if row is not None else None
    freshness_from = (
        last_updated if isinstance(last_updated, datetime) else (last.recorded_at if last else now)
    )
    return {
        "entity_type": entity_type,
        "entity_id": entity_id,
        "lineage": nodes,
        "freshness_seconds": round(max(0.0, (now - freshness_from).total_seconds()), 3),
        "validated": not dead,
        "enriched": row is not None,
        "read_model": {
            "table": table,
            "tables": list(contract.tables),
            "present": row is not None,
            "row_version": row_version,
            "contract": {"name": contract.name, "version": contract.version},
        },
        "events": items,
        "meta": {"as_of_position": watermark, "deployment": runtime.mode},
    }


@get("/v1/lineage/{entity_type:str}/{entity_id:str}")
async def lineage(request: Request[Any, Any, Any], entity_type: str, entity_id: str) -> Response[bytes]:
    tenant = tenant_of(request)
    runtime = runtime_of(request)
    if entity_type not in ENTITY_TABLES:
        raise ApiError(404, "unknown_entity_type", f"unknown entity type {entity_type!r}",
                       {"available": list(ENTITY_TABLES)})  # fmt: skip
    await await_position(request, runtime)
    hub = request.app.state.get("event_hub")
    report = await to_thread.run_sync(lineage_report, runtime, hub, tenant, entity_type, entity_id)
    if report is None:
        raise ApiError(404, "entity_not_found", f"no lineage found for {entity_type}/{entity_id}")
    return json_response(report)


# ---- GET /v1/changelog ------------------------------------------------------------------------
def _summary(e: RecordedEvent) -> str:
    return f"{e.stream_type} {e.stream_id}: {e.event_type} (position {e.position})"


def changelog_page(
    runtime: Runtime,
    tenant: str,
    before: int | None,
    limit: int,
    entity_type: str | None,
    entity_id: str | None,
    event_types: list[str] | None,
    since: datetime | None,
) -> tuple[list[RecordedEvent], int]:
    watermark = runtime.watermark
    clauses = ["tenant_id = %(t)s", "position <= %(wm)s"]
    params: dict[str, Any] = {"t": tenant, "wm": watermark, "n": limit + 1}
    if before is not None:
        clauses.append("position < %(before)s")
        params["before"] = before
    if entity_type is not None:
        clauses.append("stream_type = %(st)s")
        params["st"] = entity_type
    if entity_id is not None:
        clauses.append("stream_id = %(sid)s")
        params["sid"] = entity_id
    if event_types:
        clauses.append("event_type = ANY(%(types)s)")
        params["types"] = event_types
    if since is not None:
        clauses.append("occurred_at >= %(since)s")
        params["since"] = since
    sql = (
        f"SELECT {EVENT_COLUMNS} FROM events WHERE {' AND '.join(clauses)} ORDER BY position DESC LIMIT %(n)s"
    )
    with runtime.engine.connect() as conn:
        rows = conn.exec_driver_sql(sql, params).all()
        conn.rollback()
    return [row_to_event(r) for r in rows], watermark


@get("/v1/changelog")
async def changelog(request: Request[Any, Any, Any]) -> Response[bytes]:
    """What changed for this tenant: applied events newest first, cursor-paginated (``cursor`` = the
    ``next_cursor`` of the previous page). ``latest_version``/``versions`` keep the shape existing
    clients parse: the data version is the applied position; versions group the page by day."""
    tenant = tenant_of(request)
    runtime = runtime_of(request)
    limit = _int_param(request, "limit", 50, 1, 500)
    cursor_raw = request.query_params.get("cursor")
    before: int | None = None
    if cursor_raw:
        try:
            before = int(cursor_raw)
        except ValueError as exc:
            raise ApiError(
                422, "invalid_cursor", "cursor must be a next_cursor from a previous page"
            ) from exc
    entity_type = request.query_params.get("entity_type") or None
    if entity_type is not None and entity_type not in STREAM_TYPES:
        raise ApiError(422, "invalid_entity_type", f"unknown entity type {entity_type!r}",
                       {"available": list(STREAM_TYPES)})  # fmt: skip
    entity_id = request.query_params.get("entity_id") or None
    types_raw = request.query_params.get("event_type")
    event_types = [t.strip() for t in types_raw.split(",") if t.strip()] if types_raw else None
    if event_types and (unknown := [t for t in event_types if t not in EVENT_TYPES]):
        raise ApiError(
            422, "invalid_event_type", f"unknown event types {unknown}", {"available": list(EVENT_TYPES)}
        )
    since = None
    if raw_since := request.query_params.get("since"):
        try:
            since = datetime.fromisoformat(raw_since.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ApiError(422, "invalid_since", "since must be an ISO-8601 timestamp") from exc
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
    fresh = await await_position(request, runtime)
    events, watermark = await to_thread.run_sync(
        changelog_page, runtime, tenant, before, limit, entity_type, entity_id, event_types, since
    )
    has_more = len(events) > limit
    events = events[:limit]
    changes = []
    for e in events:
        changes.append({
            "position": e.position,
            "event_id": str(e.event_id),
            "event_type": e.event_type,
            "entity_type": e.stream_type,
            "entity_id": e.stream_id,
            "stream_version": e.stream_version,
            "occurred_at": iso(e.occurred_at),
            "recorded_at": iso(e.recorded_at),
            "data": e.data,
            "summary": _summary(e),
        })  # fmt: skip
    versions: list[dict[str, Any]] = []
    for e in events:
        day = e.occurred_at.astimezone(UTC).date().isoformat()
        if not versions or versions[-1]["date"] != day:
            versions.append({"date": day, "status": "latest" if not versions else "previous", "changes": []})
        versions[-1]["changes"].append(_summary(e))
    meta = _meta(runtime)
    meta["as_of_position"] = watermark
    if not fresh:
        meta["stale"] = True
    body = {
        "latest_version": str(watermark),
        "versions": versions,
        "changes": changes,
        "next_cursor": str(events[-1].position) if has_more and events else None,
        "has_more": has_more,
        "page_size": limit,
        "meta": meta,
    }
    return json_response(body)


# ---- GET /v1/slo ------------------------------------------------------------------------------
@get("/v1/slo")
async def slo(request: Request[Any, Any, Any]) -> Response[bytes]:
    tenant_of(request)
    runtime = runtime_of(request)
    tracker: SloTracker = _state(request, "slo")
    report = tracker.report()
    report["freshness_now_seconds"] = runtime.freshness_seconds()
    report["as_of_position"] = runtime.watermark
    return json_response(report)


SURFACE_ROUTES: list[Callable[..., Any]] = [batch, search, lineage, changelog, slo]

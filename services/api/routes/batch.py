"""``POST /v1/batch``: up to 20 entity, metric and query reads in one request, each answered as its own
route answers it (status, data or error), in the order asked.

Items run as in-process requests through the app's own routes (services/api/in_process.py), so an item
gets exactly the answer, the tenant and the errors a direct call would. (Calling the read-side query
services directly replaces this once the metric query service serves GET /v1/metrics itself.)
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from services.api.dependencies import READ
from services.api.errors import ApiError, correlation_id_of
from services.api.in_process import InProcess
from services.api.openapi import errors

MAX_BATCH = 20
_SAFE_ID = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:@")
_PASS = ("as_of", "min_position", "timeout_ms", "allow_stale")
_DIMENSIONS = ("currency", "channel", "category", "product", "method")


class BatchItem(msgspec.Struct):
    """One read. Loosely typed: an item that does not name a known type and its params answers its own
    422 (``invalid_item``) in the results, the rest of the batch runs."""

    id: Annotated[Any, msgspec.Meta(description="echoed in the result (default: the item's index)")] = None
    type: Annotated[Any, msgspec.Meta(description="entity | metric | query")] = None
    params: Annotated[
        Any,
        msgspec.Meta(
            description="entity: entity_type, entity_id; metric: name, window and the metric's dimensions "
            "(currency, channel, category, product, method); both also as_of, min_position, timeout_ms, "
            "allow_stale; query: the POST /v1/query body"
        ),
    ] = None


class BatchRequest(msgspec.Struct):
    # anything else in the list is an item of the wrong shape: its own 422 result, not a failed batch
    requests: Annotated[
        list[BatchItem | list[Any] | str | int | float | bool | None],
        msgspec.Meta(description=f"at most {MAX_BATCH} reads, answered in this order"),
    ]


class BatchResult(msgspec.Struct):
    id: str
    status: Literal["ok", "error"]
    data: Any  # the body the item's route answered (ok), else null
    error: str | None  # the item's error message (error), else null
    status_code: int  # the HTTP status the item's route answered
    error_code: str | None | msgspec.UnsetType = msgspec.UNSET  # error.code of the item's answer
    duration_ms: float | msgspec.UnsetType = msgspec.UNSET  # absent for an item that was never run


class BatchResponse(msgspec.Struct):
    results: list[BatchResult]
    duration_ms: float


def _safe_id(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 128 or not set(value) <= _SAFE_ID:
        raise ValueError(f"param {name!r} must be a non-empty id (letters, digits, - _ . : @)")
    return value


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
        for dim in _DIMENSIONS:
            query[dim] = params.get(dim)
        return "GET", f"/v1/metrics/{name}", query, b""
    if kind == "query":
        return "POST", "/v1/query", {}, msgspec.json.encode(params)
    raise ValueError(f"type must be one of entity, metric, query; not {kind!r}")


def _invalid(item_id: str, message: str) -> BatchResult:
    return BatchResult(item_id, "error", None, message, 422, error_code="invalid_item")


async def _run_item(
    in_process: InProcess,
    request: Request[Any, Any, Any],
    headers: list[tuple[bytes, bytes]],
    item: Any,
    index: int,
) -> BatchResult:
    if not isinstance(item, BatchItem):
        return _invalid(str(index), "each request must be an object")
    item_id = str(item.id) if item.id is not None else str(index)
    params = item.params or {}
    try:
        if not isinstance(params, dict):
            raise ValueError("params must be an object")
        method, path, query, body = _item_request(str(item.type), params)
    except ValueError as exc:
        return _invalid(item_id, str(exc))
    started = time.perf_counter()
    sub = await in_process.call(
        method, path, query, bytes(body), headers, request.scope.get("client"), request.scope.get("server")
    )
    took = round((time.perf_counter() - started) * 1000, 3)
    try:
        payload = msgspec.json.decode(bytes(sub.body)) if sub.body else None
    except msgspec.DecodeError:
        payload = None
    if 200 <= sub.status < 300:
        return BatchResult(item_id, "ok", payload, None, sub.status, duration_ms=took)
    detail = payload.get("detail") if isinstance(payload, dict) else None
    code = (payload.get("error") or {}).get("code") if isinstance(payload, dict) else None
    return BatchResult(
        item_id, "error", None, detail or f"HTTP {sub.status}", sub.status, error_code=code, duration_ms=took
    )


@post("/v1/batch", opt=READ, status_code=200, responses=errors(401, 413, 422))
async def batch(
    tenant: NamedDependency[str],
    in_process: NamedDependency[InProcess],
    request: Request[Any, Any, Any],
    data: JSONBody[BatchRequest],
) -> BatchResponse:
    """Items run concurrently as the caller (its API key and correlation id); a failed item is an
    ``error`` result with the status and message its route answered, never a failed batch."""
    items = data.requests
    if len(items) > MAX_BATCH:
        raise ApiError(
            422, "batch_too_large", f"at most {MAX_BATCH} requests per batch, not {len(items)}",
            {"max": MAX_BATCH, "received": len(items)},
        )  # fmt: skip
    headers = [(b"x-api-key", (request.headers.get("x-api-key") or "").encode())]
    if cid := correlation_id_of(request):  # the caller's, else the batch's request id
        headers.append((b"x-correlation-id", cid.encode()))
    started = time.perf_counter()
    results = await asyncio.gather(
        *(_run_item(in_process, request, headers, item, i) for i, item in enumerate(items))
    )
    return BatchResponse(list(results), round((time.perf_counter() - started) * 1000, 3))


BATCH_ROUTES = [batch]

"""Write side: resource-style command endpoints (API.md, "Write side")."""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
from anyio import to_thread
from litestar import Request, Response, post
from litestar.handlers import HTTPRouteHandler

from commands.bus import CommandContext, execute
from commands.idempotency import IdempotencyClaim, IdempotencyKeyReused
from commands.ports import VersionConflict
from commands.validation import InvalidCommand
from domain.errors import DomainError, NotFound
from services.api.context import correlation_id, db_limiter, json_body, json_response, runtime_of, tenant_of
from services.api.errors import ApiError
from services.runtime import Runtime


def parse_if_match(raw: str | None) -> int | None:
    if raw is None or raw.strip() in ("", "*"):
        return None
    value = raw.strip()
    if value.startswith("W/"):
        value = value[2:]
    value = value.strip('"')
    try:
        version = int(value)
    except ValueError as exc:
        raise ApiError(422, "invalid_if_match", "If-Match must be a stream version (integer)") from exc
    if version < 0:
        raise ApiError(422, "invalid_if_match", "If-Match must be a non-negative stream version")
    return version


def request_hash(name: str, entity_id: str | None, payload: dict[str, Any]) -> str:
    canonical = msgspec.json.encode([name, entity_id, payload], order="sorted")
    return hashlib.sha256(canonical).hexdigest()


async def run_command(request: Request[Any, Any, Any], name: str, entity_id: str | None) -> Response[bytes]:
    tenant = tenant_of(request)
    cid = correlation_id(request)
    payload = await json_body(request)
    runtime = runtime_of(request)
    if_match = parse_if_match(request.headers.get("if-match"))
    key = request.headers.get("idempotency-key")
    metadata: dict[str, Any] = {
        "correlation_id": cid,
        "causation_id": request.headers.get("x-causation-id") or cid,
        "actor": request.headers.get("x-actor") or f"api-key:{tenant}",
    }
    claim = None
    if key:
        if len(key) > 255:
            raise ApiError(422, "invalid_idempotency_key", "Idempotency-Key is longer than 255 characters")
        metadata["idempotency_key"] = key
        claim = IdempotencyClaim(key, request_hash(name, entity_id, payload))
    ctx = CommandContext(
        tenant_id=tenant,
        store=runtime.store,
        metadata=metadata,
        cache=runtime.aggregates,
        if_match=if_match,
        optimistic=True,
        idempotency=claim,
    )
    try:
        result = await to_thread.run_sync(execute, ctx, name, entity_id, payload, limiter=db_limiter(request))
    except IdempotencyKeyReused as exc:
        raise ApiError(422, "idempotency_key_reused", str(exc)) from exc
    except InvalidCommand as exc:
        await _reject(runtime, tenant, name, "validation_failed", {"errors": exc.errors})
        raise ApiError(422, "validation_failed", "request is not valid", exc.errors) from exc
    except DomainError as exc:
        await _reject(runtime, tenant, name, exc.code, exc.details or {})
        raise ApiError(409, exc.code, exc.message, exc.details) from exc
    except VersionConflict as exc:
        await _reject(runtime, tenant, name, "version_conflict", {"current_version": exc.actual})
        raise ApiError(
            409,
            "version_conflict",
            f"{exc.stream_type} {exc.stream_id} is at version {exc.actual}, not {exc.expected}",
            {"current_version": exc.actual, "expected_version": exc.expected},
            headers={"ETag": f'"{exc.actual}"'},
        ) from exc
    except NotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from exc
    body = {
        f"{result.entity_type}_id": result.entity_id,
        "stream_version": result.stream_version,
        "position": result.position,
    }
    headers = {"ETag": f'"{result.stream_version}"', "X-Correlation-ID": cid}
    if result.replayed:
        headers["Idempotent-Replayed"] = "true"
    return json_response(body, 201 if result.created else 200, headers)


async def _reject(runtime: Runtime, tenant: str, name: str, code: str, detail: dict[str, Any]) -> None:
    await to_thread.run_sync(runtime.store.record_rejection, tenant, name, code, detail)
    runtime.cache.invalidate_metric(tenant, "error_rate")


def _create(path: str, name: str) -> HTTPRouteHandler:
    async def handler(request: Request[Any, Any, Any]) -> Response[bytes]:
        return await run_command(request, name, None)

    handler.__name__ = name.replace(".", "_")
    return post(path, status_code=201, name=name)(handler)


def _transition(path: str, name: str) -> HTTPRouteHandler:
    async def handler(request: Request[Any, Any, Any], entity_id: str) -> Response[bytes]:
        return await run_command(request, name, entity_id)

    handler.__name__ = name.replace(".", "_")
    return post(path, status_code=200, name=name)(handler)


COMMAND_ROUTES: list[HTTPRouteHandler] = [
    _create("/v1/products", "product.register"),
    _create("/v1/users", "user.register"),
    _create("/v1/orders", "order.place"),
    _create("/v1/payments", "payment.initiate"),
    *[
        _transition(f"/v1/products/{{entity_id:str}}/{action}", f"product.{action}")
        for action in ("restock", "adjust", "price", "reserve", "release")
    ],
    *[
        _transition(f"/v1/orders/{{entity_id:str}}/{action}", f"order.{action}")
        for action in ("confirm", "cancel", "ship", "deliver", "refund")
    ],
    *[
        _transition(f"/v1/payments/{{entity_id:str}}/{action}", f"payment.{action}")
        for action in ("complete", "fail", "refund")
    ],
    _transition("/v1/sessions/{entity_id:str}/events", "session.record"),
]

"""Write side: resource-style command endpoints (API.md, "Write side")."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import msgspec
from anyio import to_thread
from litestar import Request, Response, post
from litestar.handlers import HTTPRouteHandler

from commands.handlers import CommandContext, CommandResult, InvalidCommand, execute
from commands.ports import (
    AppendResult,
    EventStorePort,
    IdempotencyRecord,
    IdempotencyReplay,
    StreamWrite,
    VersionConflict,
)
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


@dataclass
class _IdempotentStore:
    """Adds the idempotency row to the command's own append, so key and events commit together.

    The stored response names the primary stream (the handler's first write) and the
    stream holding the command's last event; replay looks that event's position up.
    """

    inner: EventStorePort
    key: str
    request_hash: str

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def append(
        self,
        tenant_id: str,
        writes: Sequence[StreamWrite],
        metadata: dict[str, Any],
        idempotency: IdempotencyRecord | None = None,
    ) -> AppendResult:
        primary, last = writes[0], writes[-1]
        response = {
            f"{primary.stream_type}_id": primary.stream_id,
            "stream_version": primary.expected_version + len(primary.events),
            "_last_event": [last.stream_type, last.stream_id, last.expected_version + len(last.events)],
        }
        status = 201 if primary.expected_version == 0 else 200
        record = IdempotencyRecord(self.key, self.request_hash, status, response)
        return self.inner.append(tenant_id, writes, metadata, record)


def _replay(store: EventStorePort, tenant: str, record: IdempotencyRecord, body_hash: str) -> Response[bytes]:
    if record.request_hash != body_hash:
        raise ApiError(
            422,
            "idempotency_key_reused",
            "Idempotency-Key was already used with a different request body",
        )
    response = dict(record.response)
    stream_type, stream_id, version = response.pop("_last_event")
    events = store.load_stream(tenant, stream_type, stream_id, after_version=version - 1)
    response["position"] = events[0].position if events else 0
    return json_response(response, record.status_code, {"Idempotent-Replayed": "true"})


def _execute(
    ctx: CommandContext, key: str | None, body_hash: str, name: str, entity_id: str | None,
    payload: dict[str, Any],
) -> CommandResult | Response[bytes]:
    """Idempotency check + command in ONE worker-thread hop; a replayed key returns its response."""
    store = ctx.store
    if key:
        existing = store.get_idempotency(ctx.tenant_id, key)
        if existing is not None:
            return _replay(store, ctx.tenant_id, existing, body_hash)
        ctx = replace(ctx, store=_IdempotentStore(store, key, body_hash))  # type: ignore[arg-type]
    try:
        return execute(ctx, name, entity_id, payload)
    except IdempotencyReplay as replay:
        return _replay(store, ctx.tenant_id, replay.record, body_hash)


async def run_command(request: Request[Any, Any, Any], name: str, entity_id: str | None) -> Response[bytes]:
    tenant = tenant_of(request)
    cid = correlation_id(request)
    payload = await json_body(request)
    runtime = runtime_of(request)
    store: EventStorePort = runtime.store
    if_match = parse_if_match(request.headers.get("if-match"))
    key = request.headers.get("idempotency-key")
    metadata: dict[str, Any] = {
        "correlation_id": cid,
        "causation_id": request.headers.get("x-causation-id") or cid,
        "actor": request.headers.get("x-actor") or f"api-key:{tenant}",
    }
    body_hash = ""
    if key:
        if len(key) > 255:
            raise ApiError(422, "invalid_idempotency_key", "Idempotency-Key is longer than 255 characters")
        metadata["idempotency_key"] = key
        body_hash = request_hash(name, entity_id, payload)
    ctx = CommandContext(tenant_id=tenant, store=store, metadata=metadata, if_match=if_match, optimistic=True)
    try:
        result = await to_thread.run_sync(
            _execute, ctx, key, body_hash, name, entity_id, payload, limiter=db_limiter(request)
        )
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
    if isinstance(result, Response):
        return result
    body = {
        f"{result.entity_type}_id": result.entity_id,
        "stream_version": result.stream_version,
        "position": result.position,
    }
    headers = {"ETag": f'"{result.stream_version}"', "X-Correlation-ID": cid}
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
        for action in ("restock", "price", "reserve", "release")
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

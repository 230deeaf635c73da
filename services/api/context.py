"""Per-request helpers shared by the route modules: auth, JSON in/out, correlation ids."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from anyio import CapacityLimiter
from litestar import Request, Response

from connectors.database import db_threads
from services.api.errors import ApiError
from services.auth import ApiKeys
from services.rate_limit import RateLimiter, retry_after_header
from services.runtime import Runtime

JSON = "application/json"


def runtime_of(request: Request[Any, Any, Any]) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


def db_limiter(request: Request[Any, Any, Any]) -> CapacityLimiter:
    """The worker threads for command (database) work: as many as the engine pools connections for
    (connectors.database.make_service_engine), so commands never open overflow connections."""
    state = request.app.state
    limiter: CapacityLimiter | None = state.get("db_limiter")
    if limiter is None:
        limiter = CapacityLimiter(db_threads())
        state["db_limiter"] = limiter
    return limiter


def tenant_of(request: Request[Any, Any, Any]) -> str:
    """The caller's tenant, from X-API-Key; also applies the per-key rate limit when one is set."""
    keys: ApiKeys = request.app.state.api_keys
    key = request.headers.get("x-api-key")
    tenant = keys.tenant_for(key)
    if tenant is None:
        raise ApiError(401, "unauthorized", "missing or invalid X-API-Key")
    limiter: RateLimiter | None = request.app.state.get("rate_limiter")
    if limiter is not None and (wait := limiter.acquire(key or "")):
        raise ApiError(
            429,
            "rate_limited",
            f"more than {int(limiter.capacity)} requests a minute for this API key",
            {"retry_after_seconds": round(wait, 3)},
            headers={"Retry-After": retry_after_header(wait)},
        )
    return tenant


def correlation_id(request: Request[Any, Any, Any]) -> str:
    cid = request.headers.get("x-correlation-id") or str(uuid.uuid4())
    request.scope.setdefault("state", {})["correlation_id"] = cid  # type: ignore[typeddict-item]
    return cid


async def json_body(request: Request[Any, Any, Any]) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise ApiError(422, "invalid_json", f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_body", "request body must be a JSON object")
    return body


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response[bytes]:
    return Response(
        content=msgspec.json.encode(body), status_code=status, media_type=JSON, headers=headers
    )

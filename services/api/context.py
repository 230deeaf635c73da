"""Per-request helpers shared by the route modules: auth, JSON in/out, correlation ids."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from anyio import CapacityLimiter
from litestar import Request, Response

from services.api.dependencies import authenticate
from services.api.errors import ApiError
from services.runtime import Runtime

JSON = "application/json"


def runtime_of(request: Request[Any, Any, Any]) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


def db_limiter(request: Request[Any, Any, Any]) -> CapacityLimiter:
    """The worker threads for command (database) work (transitional: routes on dependency injection
    declare ``db_limiter`` instead)."""
    return request.app.state.db_limiter()  # type: ignore[no-any-return]


def tenant_of(request: Request[Any, Any, Any]) -> str:
    """The caller's tenant (transitional: routes on dependency injection declare ``tenant``)."""
    return authenticate(request, request.app.state.container)


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

"""The one JSON error shape of API.md: existing clients read ``detail``."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import ClientException, HTTPException, NotFoundException, ValidationException
from litestar.handlers import HTTPRouteHandler

from readmodels.errors import NotYetApplied, ReadError, ReadNotFound


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}


def error_body(code: str, message: str, details: Any, correlation_id: str) -> bytes:
    return msgspec.json.encode(
        {
            "detail": message,
            "error": {"code": code, "message": message, "details": details},
            "correlation_id": correlation_id,
        }
    )


def correlation_id_of(request: Request[Any, Any, Any]) -> str:
    """The request's correlation id: the one a command used, else the caller's ``X-Correlation-ID``,
    else its request id (the ``X-Request-ID`` of the answer, services/api/http_guard.py)."""
    state: dict[str, Any] = request.scope.get("state") or {}  # type: ignore[assignment]
    cid = state.get("correlation_id")
    if cid:
        return str(cid)
    return request.headers.get("x-correlation-id") or str(state.get("request_id") or "")


def scope_correlation_id(scope: Any) -> str:
    """``correlation_id_of`` for a bare ASGI wrapper that answers before the app runs."""
    cid = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-correlation-id"), "")
    return cid or str((scope.get("state") or {}).get("request_id") or "")


def error_response(request: Request[Any, Any, Any], exc: ApiError) -> Response[bytes]:
    return Response(
        content=error_body(exc.code, exc.message, exc.details, correlation_id_of(request)),
        status_code=exc.status,
        media_type="application/json",
        headers=exc.headers,
    )


def read_error_response(request: Request[Any, Any, Any], exc: ReadError) -> Response[bytes]:
    """A read the query services refused: no such thing 404, a parameter it does not take 422, a
    position not applied in time 503 with Retry-After."""
    if isinstance(exc, NotYetApplied):
        headers = {"Retry-After": str(exc.retry_after_s)}
        return error_response(request, ApiError(503, exc.code, exc.message, exc.details, headers))
    status = 404 if isinstance(exc, ReadNotFound) else 422
    return error_response(request, ApiError(status, exc.code, exc.message, exc.details))


def validation_error_response(request: Request[Any, Any, Any], exc: ValidationException) -> Response[bytes]:
    """Litestar's own parsing of typed parameters and bodies: 422 with the field errors."""
    fields = [
        {"field": str(e.get("key") or e.get("source") or ""), "message": str(e.get("message", ""))}
        for e in (exc.extra if isinstance(exc.extra, list) else [])
        if isinstance(e, dict)
    ]
    return error_response(request, ApiError(422, "validation_failed", "request is not valid", fields))


def http_exception_response(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    if type(exc) is ClientException and exc.status_code == 400:  # a body Litestar could not decode
        detail = exc.detail if isinstance(exc.detail, str) else "request body is not valid JSON"
        return error_response(request, ApiError(422, "invalid_json", detail))
    if exc.status_code == 413:  # litestar's request_max_body_size (AGENTFLOW_MAX_BODY_BYTES)
        handler = request.scope.get("route_handler")
        limit = handler.resolve_request_max_body_size() if isinstance(handler, HTTPRouteHandler) else None
        message = f"request body is larger than {limit} bytes" if limit else "request body is too large"
        return error_response(request, ApiError(413, "body_too_large", message, {"max_bytes": limit}))
    code = "not_found" if isinstance(exc, NotFoundException) else "http_error"
    if exc.status_code == 405:
        code = "method_not_allowed"
    detail = exc.detail if isinstance(exc.detail, str) else "request failed"
    return error_response(request, ApiError(exc.status_code, code, detail, getattr(exc, "extra", None)))


def internal_error_response(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    request.logger.exception("unhandled error")
    return error_response(request, ApiError(500, "internal_error", "internal server error"))

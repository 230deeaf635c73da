"""Typed errors: every API error carries the body's ``error.code``, ``message`` and ``details``, the
status, the ``X-Request-ID`` and correlation id of the answer, and ``Retry-After`` when it sent one."""

from __future__ import annotations

from typing import Any

import msgspec

from agentflow_client.types import ErrorBody


class AgentFlowError(Exception):
    """Anything the client raises."""


class TransportError(AgentFlowError):
    """No answer: the connection failed or was cut (after the retries the request allowed)."""


class Timeout(TransportError):
    """No answer within the client's timeout."""


class ApiError(AgentFlowError):
    """The API answered with an error status."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        request_id: str | None = None,
        correlation_id: str | None = None,
        retry_after: float | None = None,
        method: str = "",
        path: str = "",
    ) -> None:
        super().__init__(f"{status} {code}: {message}" + (f" ({method} {path})" if method else ""))
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.request_id = request_id
        self.correlation_id = correlation_id
        self.retry_after = retry_after


class BadRequest(ApiError):
    """400"""


class Unauthorized(ApiError):
    """401: no key, or one the API does not know."""


class Forbidden(ApiError):
    """403: the key lacks the scope."""


class NotFound(ApiError):
    """404"""


class Conflict(ApiError):
    """409: a business rule refused the command (``code`` says which), or ``version_conflict``."""


class VersionConflict(Conflict):
    """409 ``version_conflict``: the stream is not at the ``If-Match`` version."""


class Unprocessable(ApiError):
    """422: malformed input; ``details`` names the fields."""


class RateLimited(ApiError):
    """429: past the key's budget (``retry_after`` says when one more request fits)."""


class Unavailable(ApiError):
    """503: e.g. ``position_not_yet_applied`` (the read model has not reached ``min_position``)."""


class ServerError(ApiError):
    """5xx other than 503."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict,
    422: Unprocessable, 429: RateLimited, 503: Unavailable,
}  # fmt: skip


def api_error(
    status: int, body: bytes, headers: Any, retry_after: float | None, method: str, path: str
) -> ApiError:
    """The typed error of an error answer (a body that is not the API's error shape still gives one)."""
    try:
        parsed = msgspec.json.decode(body, type=ErrorBody)
        code, message, details, cid = parsed.error.code, parsed.error.message, parsed.error.details, (
            parsed.correlation_id
        )
    except (msgspec.DecodeError, msgspec.ValidationError):
        code, message, details, cid = f"http_{status}", body.decode("utf-8", "replace")[:500], None, None
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else ApiError)
    if status == 409 and code == "version_conflict":
        cls = VersionConflict
    return cls(
        status, code, message, details, headers.get("x-request-id"), cid or headers.get("x-correlation-id"),
        retry_after, method, path,
    )  # fmt: skip

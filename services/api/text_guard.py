"""Text no store can hold: a NUL character (``\\u0000``) in the path (a path id), a query parameter or any
string of a JSON body is refused with 422 validation_failed, naming where it is, before any route uses it
(Postgres text and jsonb cannot store NUL: it used to surface as a 500 from the database).

``TextGuard`` wraps the app's ASGI handler once, for every route, like the latency recorder (a bare
wrapper, no middleware stack): a request without NUL pays two substring tests of its path and query
string, and a body-carrying request a substring test of its body as the route reads it. A NUL in the
path or query is answered right here; one in a body is raised from ``receive`` as the route reads the
body, and answered by the app's error handler.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import msgspec
from litestar.types import ASGIApp, Receive, ReceiveMessage, Scope, Send

from services.api.errors import ApiError, error_body, scope_correlation_id

_BODY_METHODS = frozenset(("POST", "PUT", "PATCH"))
_MESSAGE = "must not contain the NUL character (\\u0000)"


def nul_fields(value: Any, path: str = "") -> list[str]:
    """Where in a decoded JSON value a string (or an object key) holds NUL."""
    if isinstance(value, str):
        return [path or "body"] if "\x00" in value else []
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            name = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                found.append(name)
            found.extend(nul_fields(item, name))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found.extend(nul_fields(item, f"{path}[{i}]"))
    return found


def _refused(fields: list[str]) -> ApiError:
    details = [{"field": field.replace("\x00", "\\u0000"), "message": _MESSAGE} for field in fields]
    return ApiError(422, "validation_failed", "request is not valid", details)


def _in_url(scope: Scope) -> list[str]:
    if "\x00" in scope["path"]:
        return ["path"]
    query: bytes = scope.get("query_string", b"")  # type: ignore[assignment]
    if b"%00" in query or b"\x00" in query:
        pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
        return [name for name, value in pairs if "\x00" in name + value] or ["query"]
    return []


def _checked(receive: Receive) -> Receive:
    """``receive`` that raises 422 once the whole body is read and holds a NUL in a JSON string."""
    chunks: list[bytes] = []

    async def checked() -> ReceiveMessage:
        message = await receive()
        if message["type"] == "http.request":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                body = b"".join(chunks)
                chunks.clear()
                if b"\\u0000" in body:  # JSON spells NUL only so; decoding tells an escaped backslash apart
                    try:
                        fields = nul_fields(msgspec.json.decode(body))
                    except msgspec.DecodeError:
                        fields = []  # not JSON: the route answers that
                    if fields:
                        raise _refused(fields)
        return message

    return checked


class TextGuard:
    __slots__ = ("app",)

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        fields = _in_url(scope)
        if fields:
            await self._refuse(scope, send, fields)
            return
        if scope["method"] in _BODY_METHODS:  # type: ignore[typeddict-item]
            receive = _checked(receive)
        await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(scope: Scope, send: Send, fields: list[str]) -> None:
        error = _refused(fields)
        body = error_body(error.code, error.message, error.details, scope_correlation_id(scope))
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": error.status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

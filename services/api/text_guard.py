"""Text no store can hold: a NUL character (``\\u0000``) in the path (a path id), a query parameter or any
string of a JSON body is refused with 422 validation_failed, naming where it is, before any route uses it
(Postgres text and jsonb cannot store NUL: it used to surface as a 500 from the database).

The checks are plain functions the front door (services/api/http_guard.py) calls once per request, for
every route: a request without NUL pays two substring tests of its path and query string
(``nul_in_url``), and a body-carrying request (``BODY_METHODS``) a substring test of its body as the route
reads it (``nul_checked``). A NUL in the path or query is answered by the front door (``refuse_nul``); one
in a body is raised from ``receive`` as the route reads the body, and answered by the app's error handler.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import msgspec
from litestar.types import Receive, ReceiveMessage, Scope, Send

from services.api.errors import ApiError, error_body, scope_correlation_id

BODY_METHODS = frozenset(("POST", "PUT", "PATCH"))
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


def nul_in_url(scope: Scope) -> list[str]:
    """Where the path or query string holds NUL (empty: nowhere)."""
    if "\x00" in scope["path"]:
        return ["path"]
    query: bytes = scope.get("query_string", b"")  # type: ignore[assignment]
    if b"%00" in query or b"\x00" in query:
        pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
        return [name for name, value in pairs if "\x00" in name + value] or ["query"]
    return []


def nul_checked(receive: Receive) -> Receive:
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


async def refuse_nul(scope: Scope, send: Send, fields: list[str]) -> None:
    """Answer 422 validation_failed (the error shape) naming ``fields``, before the app runs."""
    error = _refused(fields)
    body = error_body(error.code, error.message, error.details, scope_correlation_id(scope))
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})

"""Text no store can hold: a NUL character (``\\u0000``) in a path, a query parameter or any string of a
JSON body is refused with 422 before any route runs (Postgres text and jsonb cannot store it).

``reject_nul`` is the app's ``before_request`` hook: one check for every route. Requests without NUL pay a
substring test of the path and query string, and of the body only for methods that carry one.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import msgspec
from litestar import Request

from services.api.errors import ApiError

_BODY_METHODS = frozenset(("POST", "PUT", "PATCH"))
_MESSAGE = "must not contain the NUL character (\\u0000)"


def _nul_paths(value: Any, path: str) -> list[str]:
    """Where in a decoded JSON value a string (or object key) holds NUL."""
    if isinstance(value, str):
        return [path or "body"] if "\x00" in value else []
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            name = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                found.append(name)
            found.extend(_nul_paths(item, name))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found.extend(_nul_paths(item, f"{path}[{i}]"))
    return found


def _refuse(fields: list[str]) -> ApiError:
    return ApiError(
        422,
        "validation_failed",
        "request is not valid",
        [{"field": field.replace("\x00", "\\u0000"), "message": _MESSAGE} for field in fields],
    )


async def reject_nul(request: Request[Any, Any, Any]) -> None:
    scope = request.scope
    if "\x00" in scope["path"]:
        raise _refuse(["path"])
    query: bytes = scope.get("query_string", b"")  # type: ignore[assignment]
    if b"%00" in query or b"\x00" in query:
        pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
        raise _refuse([name for name, value in pairs if "\x00" in name + value] or ["query"])
    if request.method in _BODY_METHODS:
        body = await request.body()
        if b"\\u0000" in body:  # JSON spells NUL only this way; decoding tells an escaped backslash apart
            try:
                fields = _nul_paths(msgspec.json.decode(body), "")
            except msgspec.DecodeError:
                return  # not JSON: the route answers that
            if fields:
                raise _refuse(fields)

"""What read routes share: the consistency query parameters (``min_position``, ``timeout_ms``,
``allow_stale``) and ``as_of``, the ``meta`` every read carries, and the bare JSON response of the hot
reads.

A route declares ``min_position: MinPosition = None, timeout_ms: TimeoutMs = None, allow_stale: AllowStale
= False`` and passes ``ReadAfter(min_position, timeout_ms, allow_stale)`` to its query service.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar.params import QueryParameter
from litestar.types import Receive, Scope, Send

AsOf = Annotated[
    str | None,
    QueryParameter(
        description="an ISO-8601 instant (naive = UTC), not in the future: the value as it stood then, "
        "folded from the event store (422 invalid_as_of / as_of_in_future)"
    ),
]
MinPosition = Annotated[
    int | None,
    QueryParameter(
        description="the position a command returned: wait (bounded) until the read model has applied "
        "it; 503 position_not_yet_applied with Retry-After when the bound passes"
    ),
]
TimeoutMs = Annotated[
    int | None,
    QueryParameter(description="wait at most this long for min_position (capped by the server's bound)"),
]
AllowStale = Annotated[
    bool,
    QueryParameter(description="when min_position is not applied in time, answer the current value "
                   "flagged meta.stale instead of 503"),
]  # fmt: skip


class ReadMeta(msgspec.Struct):
    """How fresh a read is."""

    as_of: str
    is_historical: bool
    freshness_seconds: float
    as_of_position: int
    stale: bool | msgspec.UnsetType = msgspec.UNSET


_encode = msgspec.json.Encoder().encode
_JSON_HEADERS = [(b"content-type", b"application/json")]


class FastJson:
    """A bare ASGI 200 JSON response: the hot reads skip Litestar's Response conversion (declare the
    body's schema with ``responses={200: ResponseSpec(TheStruct)}``)."""

    __slots__ = ("body",)

    def __init__(self, body: Any) -> None:
        self.body = _encode(body)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*_JSON_HEADERS, (b"content-length", str(len(self.body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": self.body, "more_body": False})

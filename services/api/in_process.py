"""The app's own routes, called in process: ``POST /v1/batch`` runs each item as a request through them
(same authentication, tenant, validation and answers as a direct call) without a network round trip.

``create_app`` binds the app's ASGI handler *inside* the front door (services/api/http_guard.py: the batch
itself is measured, its items are not) once the app is built; routes get the binding as
``in_process: InProcess``.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote, urlencode

from litestar import Litestar
from litestar.types import ASGIApp, Message


class SubResponse:
    __slots__ = ("body", "status")

    def __init__(self) -> None:
        self.status = 500
        self.body = bytearray()


class InProcess:
    def __init__(self) -> None:
        self._app: Litestar | None = None
        self._asgi: ASGIApp | None = None

    def bind(self, app: Litestar, asgi: ASGIApp) -> None:
        self._app, self._asgi = app, asgi

    async def call(
        self,
        method: str,
        path: str,
        query: dict[str, Any],
        body: bytes,
        headers: list[tuple[bytes, bytes]],
        client: Any = None,
        server: Any = None,
    ) -> SubResponse:
        """One request (``query`` values of None are left out); the status and body it answered."""
        if self._asgi is None:
            raise RuntimeError("InProcess is not bound to an app")
        headers = list(headers)
        if body:
            headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": quote(path).encode(),
            "query_string": urlencode({k: v for k, v in query.items() if v is not None}).encode(),
            "root_path": "",
            "headers": headers,
            "client": client,
            "server": server,
            "app": self._app,
            "litestar_app": self._app,
            "state": {},
        }
        sent = False
        never = asyncio.Event()

        async def receive() -> Any:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await never.wait()
            return {"type": "http.disconnect"}  # pragma: no cover

        out = SubResponse()

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                out.status = message["status"]
            elif message["type"] == "http.response.body":
                out.body += message.get("body", b"")

        await self._asgi(scope, receive, send)  # type: ignore[arg-type]
        return out

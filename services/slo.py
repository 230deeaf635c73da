"""How the HTTP app measures itself for the service level objectives (readmodels/slo.py): every request's
latency class, status and duration go to the SloTracker, through one bare ASGI wrapper (no middleware
stack)."""

from __future__ import annotations

import time

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from readmodels.slo import SloTracker


def route_class(method: str, path: str) -> str | None:
    """Which latency objective a request counts towards; None for streams and health probes."""
    if path.startswith("/v1/stream") or path.startswith("/v1/health") or path == "/metrics":
        return None
    if method == "POST":
        if path.startswith(("/v1/query", "/v1/batch")):
            return "query"
        if path.startswith("/v1/contracts"):
            return "read"
        return "command"
    return "read"


class LatencyRecorder:
    """A bare ASGI wrapper (no middleware stack): time each HTTP request, note its status."""

    __slots__ = ("app", "tracker")

    def __init__(self, app: ASGIApp, tracker: SloTracker) -> None:
        self.app = app
        self.tracker = tracker

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]  # type: ignore[typeddict-item]
        path = scope["path"]
        cls = route_class(method, path)
        if cls is None:
            await self.app(scope, receive, send)
            return
        status = [500]

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_status)
        finally:
            self.tracker.record_request(
                cls, status[0], time.perf_counter() - started, command=cls == "command"
            )

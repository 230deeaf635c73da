"""``GET /v1/stream/events``: Server-Sent Events of applied events.

Each event is ``id: <position>``, ``event: <type>``, ``data: <event json>``. The stream only sends
events the serving read models have applied, in position order (AppliedEventHub publishes up to the
watermark), so ``Last-Event-ID`` (or ``?last_event_id=``) is a safe resume point: the stream first
replays the tenant's events after it from the event store (or the hub's buffer), bounded by the
watermark, then continues live. Filters: ``event_type`` (event types, stream types or the legacy
categories), ``entity_type``, ``entity_id``. Without a resume point the stream starts at the current
watermark. A comment line is sent every ``heartbeat`` seconds of silence. Each tenant may hold
``AGENTFLOW_SSE_MAX_STREAMS`` (default 5) streams at once; one more answers 429.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import msgspec
from anyio import to_thread
from litestar import Request, get
from litestar.types import Receive, Scope, Send

from domain.events import RecordedEvent
from services.api.context import runtime_of, tenant_of
from services.api.errors import ApiError
from services.event_stream import AppliedEventHub, EventFilter, StreamSlots, event_json
from services.runtime import Runtime

_encode = msgspec.json.Encoder().encode
REPLAY_PAGE = 500


def sse_frame(event: RecordedEvent) -> bytes:
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (
        event.position,
        event.event_type.encode(),
        _encode(event_json(event)),
    )


class _EventStream:
    """A raw ASGI streaming response; stops when the client disconnects or ``max_events`` are sent."""

    def __init__(
        self,
        runtime: Runtime,
        hub: AppliedEventHub,
        slots: StreamSlots,
        tenant: str,
        flt: EventFilter,
        cursor: int,
        heartbeat: float,
        max_events: int | None,
    ) -> None:
        self.runtime = runtime
        self.hub = hub
        self.slots = slots
        self.tenant = tenant
        self.flt = flt
        self.cursor = cursor
        self.heartbeat = heartbeat
        self.max_events = max_events
        self.sent = 0

    def _bound(self) -> int:
        return self.hub.watermark if self.hub.started else self.runtime.watermark

    async def _next(self) -> list[RecordedEvent]:
        """Events after the cursor, up to the published watermark (empty: nothing new yet)."""
        bound = self._bound()
        if self.cursor >= bound:
            return []
        buffered = self.hub.since(self.cursor, REPLAY_PAGE)
        if buffered is not None:
            applied, seen = buffered
            self.cursor = seen
            return [a.event for a in applied if a.event.tenant_id == self.tenant]
        events = await to_thread.run_sync(
            lambda: self.runtime.store.read_all(
                after_position=self.cursor, limit=REPLAY_PAGE, tenant_id=self.tenant, max_position=bound
            )
        )
        self.cursor = events[-1].position if len(events) == REPLAY_PAGE else bound
        return events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        disconnected = asyncio.Event()

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    disconnected.set()
                    return

        watcher = asyncio.ensure_future(watch())
        try:
            await send({
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-cache"),
                    (b"x-accel-buffering", b"no"),
                ],
            })  # fmt: skip
            await self._body(send, b"retry: 2000\n: stream open at position %d\n\n" % self.cursor)
            await self._run(send, disconnected)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass  # the client went away mid-write
        finally:
            watcher.cancel()
            self.slots.release(self.tenant)

    async def _body(self, send: Send, data: bytes) -> None:
        await send({"type": "http.response.body", "body": data, "more_body": True})

    async def _run(self, send: Send, disconnected: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        quiet_since = loop.time()
        while not disconnected.is_set():
            events = await self._next()
            if events:
                frames = []
                for e in events:
                    if not self.flt.matches(e):
                        continue
                    frames.append(sse_frame(e))
                    self.sent += 1
                    if self.max_events is not None and self.sent >= self.max_events:
                        break
                if frames:
                    await self._body(send, b"".join(frames))
                    quiet_since = loop.time()
                if self.max_events is not None and self.sent >= self.max_events:
                    return
                continue
            wait = self.heartbeat - (loop.time() - quiet_since)
            if wait <= 0:
                await self._body(send, b": heartbeat %d\n\n" % self.cursor)
                quiet_since = loop.time()
                continue
            waiter = asyncio.ensure_future(self.hub.wait(wait))
            gone = asyncio.ensure_future(disconnected.wait())
            try:
                await asyncio.wait({waiter, gone}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in (waiter, gone):
                    t.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await t


@get("/v1/stream/events")
async def stream_events(request: Request[Any, Any, Any]) -> _EventStream:
    tenant = tenant_of(request)
    runtime = runtime_of(request)
    hub: AppliedEventHub | None = request.app.state.get("event_hub")
    slots: StreamSlots | None = request.app.state.get("stream_slots")
    if hub is None or slots is None:
        raise ApiError(503, "not_configured", "the event stream is not configured in this process")
    params = request.query_params
    try:
        flt = EventFilter(params.get("event_type"), params.get("entity_type"), params.get("entity_id"))
    except ValueError as exc:
        raise ApiError(422, "invalid_filter", str(exc)) from exc
    raw_last = request.headers.get("last-event-id") or params.get("last_event_id")
    if raw_last:
        try:
            cursor = int(raw_last)
        except ValueError as exc:
            raise ApiError(422, "invalid_last_event_id", "Last-Event-ID must be an event position") from exc
        if cursor < 0:
            raise ApiError(422, "invalid_last_event_id", "Last-Event-ID must not be negative")
    else:
        cursor = hub.watermark if hub.started else runtime.watermark
    try:
        heartbeat = float(params.get("heartbeat") or 15.0)
    except ValueError as exc:
        raise ApiError(422, "invalid_heartbeat", "heartbeat must be a number of seconds") from exc
    heartbeat = min(max(heartbeat, 0.5), 60.0)
    max_events = None
    if raw_max := params.get("max_events"):
        try:
            max_events = int(raw_max)
        except ValueError as exc:
            raise ApiError(422, "invalid_max_events", "max_events must be an integer") from exc
        if max_events < 1:
            raise ApiError(422, "invalid_max_events", "max_events must be positive")
    if not slots.acquire(tenant):
        raise ApiError(
            429, "too_many_streams", f"at most {slots.limit} concurrent event streams per tenant",
            {"limit": slots.limit}, headers={"Retry-After": "5"},
        )  # fmt: skip
    return _EventStream(runtime, hub, slots, tenant, flt, cursor, heartbeat, max_events)


STREAM_ROUTES = [stream_events]

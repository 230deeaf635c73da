"""``GET /v1/stream/events``: Server-Sent Events of applied events.

Each event is ``id: <position>``, ``event: <type>``, ``data: <event json>``. The stream only sends
events the serving read models have applied, in position order (readmodels/applied_events.py:
the hub publishes up to the watermark, the EventFeed reads after a cursor), so ``Last-Event-ID`` (or
``?last_event_id=``) is a safe resume point: the stream first replays the tenant's events after it from
the event store (or the hub's buffer), bounded by the watermark, then continues live. Without a resume
point the stream starts at the current watermark. A comment line is sent every ``heartbeat`` seconds of
silence. Each tenant may hold ``AGENTFLOW_SSE_MAX_STREAMS`` (default 5) streams at once; one more
answers 429.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated

import msgspec
from anyio import to_thread
from litestar import get
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import HeaderParameter, QueryParameter
from litestar.types import Receive, Scope, Send

from domain.events import RecordedEvent
from readmodels.applied_events import EventFeed, EventFilter, StreamSlots, event_json
from services.api.dependencies import READ
from services.api.errors import ApiError
from services.api.openapi import errors

_encode = msgspec.json.Encoder().encode


def sse_frame(event: RecordedEvent) -> bytes:
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (
        event.position,
        event.event_type.encode(),
        _encode(event_json(event)),
    )


class EventFrame(msgspec.Struct):
    """One event of the stream, as a Server-Sent Events client parses it."""

    id: Annotated[str, msgspec.Meta(description="the event's position (a resume point for Last-Event-ID)")]
    event: Annotated[str, msgspec.Meta(description="the event type, e.g. OrderPlaced")]
    data: Annotated[
        str,
        msgspec.Meta(
            description="the event as a JSON object: type, id, position, tenant_id, stream_type, stream_id, "
            "stream_version, schema_version, data, occurred_at, recorded_at, and the names existing clients "
            "read: event_id, event_type, entity_type, entity_id"
        ),
    ]


class _EventStream:
    """A raw ASGI streaming response; stops when the client disconnects or ``max_events`` are sent."""

    def __init__(
        self,
        feed: EventFeed,
        slots: StreamSlots,
        tenant: str,
        flt: EventFilter,
        cursor: int,
        heartbeat: float,
        max_events: int | None,
    ) -> None:
        self.feed = feed
        self.slots = slots
        self.tenant = tenant
        self.flt = flt
        self.cursor = cursor
        self.heartbeat = heartbeat
        self.max_events = max_events
        self.sent = 0

    async def _next(self) -> list[RecordedEvent]:
        """Events after the cursor, up to the published watermark (empty: nothing new yet)."""
        got = self.feed.poll(self.tenant, self.cursor)
        if got is None:
            got = await to_thread.run_sync(self.feed.replay, self.tenant, self.cursor)
        events, self.cursor = got
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
            waiter = asyncio.ensure_future(self.feed.wait(wait))
            gone = asyncio.ensure_future(disconnected.wait())
            try:
                await asyncio.wait({waiter, gone}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in (waiter, gone):
                    t.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await t


_STREAM = ResponseSpec(
    EventFrame,
    description="text/event-stream: frames `id: <position>`, `event: <event type>`, `data: <event json>`; "
    "comment lines (`: ...`) open the stream and keep it alive",
    media_type="text/event-stream",
    generate_examples=False,
)


@get("/v1/stream/events", opt=READ, responses={200: _STREAM, **errors(401, 422, 429)})
async def stream_events(
    tenant: NamedDependency[str],
    event_feed: NamedDependency[EventFeed],
    stream_slots: NamedDependency[StreamSlots],
    event_type: Annotated[
        str | None,
        QueryParameter(description="only these (comma-separated): event types, stream types, or the "
                       "categories order, payment, clickstream, inventory"),
    ] = None,
    entity_type: Annotated[str | None, QueryParameter(description="only events of this stream type")] = None,
    entity_id: Annotated[
        str | None,
        QueryParameter(description="only events of this entity's stream (or, without entity_type, those "
                       "that name it in their data)"),
    ] = None,
    last_event_id_header: Annotated[
        int | None, HeaderParameter(name="Last-Event-ID", description="resume after this position", ge=0)
    ] = None,
    last_event_id: Annotated[
        int | None, QueryParameter(description="resume after this position (as Last-Event-ID)", ge=0)
    ] = None,
    heartbeat: Annotated[
        float, QueryParameter(description="seconds of silence between keep-alive comments (0.5 to 60)")
    ] = 15.0,
    max_events: Annotated[
        int | None, QueryParameter(description="end the stream after this many events", ge=1)
    ] = None,
) -> _EventStream:
    try:
        flt = EventFilter(event_type, entity_type, entity_id)
    except ValueError as exc:
        raise ApiError(422, "invalid_filter", str(exc)) from exc
    cursor = last_event_id_header if last_event_id_header is not None else last_event_id
    if cursor is None:
        cursor = event_feed.bound()
    if not stream_slots.acquire(tenant):
        raise ApiError(
            429, "too_many_streams", f"at most {stream_slots.limit} concurrent event streams per tenant",
            {"limit": stream_slots.limit}, headers={"Retry-After": "5"},
        )  # fmt: skip
    beat = min(max(heartbeat, 0.5), 60.0)
    return _EventStream(event_feed, stream_slots, tenant, flt, cursor, beat, max_events)


STREAM_ROUTES = [stream_events]

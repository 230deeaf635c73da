"""Applied events, in position order: the hub the SSE stream (GET /v1/stream/events), lineage timings,
the search index and anything else that follows the read models live hear them from.

The serving projector (or the distributed serving loader) hands every applied batch to
``AppliedEventHub.on_applied(events, watermark)`` in its own thread, *before* the runtime publishes the
watermark. The tail is commit-ordered, not position-ordered, so events wait in ``_pending`` until the
watermark covers them (every position up to the watermark is applied), and are then *published* in
position order. A published event never has a smaller position than one published before it, which is
what makes ``Last-Event-ID = position`` a safe resume point.

The hub keeps the last ``capacity`` published events (all tenants) with the wall-clock time each was
applied. A reader whose cursor is older than that buffer replays from the event store instead
(``EventFeed``: ``covers``/``since``), bounded by ``watermark``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from domain.events import EVENT_TYPES, STREAM_TYPES, RecordedEvent
from readmodels.ports import EventLog, ServingProgress

# the categories existing AgentFlow clients filter the stream by -> stream types
LEGACY_CATEGORIES = {"clickstream": "session", "inventory": "product"}
ID_FIELDS = ("order_id", "user_id", "product_id", "payment_id", "session_id")


@dataclass(frozen=True, slots=True)
class Applied:
    event: RecordedEvent
    applied_at: float  # time.time() when the serving read model applied it


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def event_json(event: RecordedEvent) -> dict[str, Any]:
    """The wire shape of one event (SSE ``data:``, changelog and lineage entries)."""
    return {
        "type": event.event_type,
        "id": str(event.event_id),
        "position": event.position,
        "tenant_id": event.tenant_id,
        "stream_type": event.stream_type,
        "stream_id": event.stream_id,
        "stream_version": event.stream_version,
        "schema_version": event.schema_version,
        "data": event.data,
        "occurred_at": iso(event.occurred_at),
        "recorded_at": iso(event.recorded_at),
        # the names existing clients of the stream read
        "event_id": str(event.event_id),
        "event_type": event.event_type,
        "entity_type": event.stream_type,
        "entity_id": event.stream_id,
    }


class EventFilter:
    """``event_type`` (comma-separated event type names, stream types or the legacy categories
    ``order|payment|clickstream|inventory``), ``entity_type`` and ``entity_id``.

    ``entity_id`` alone matches an event of that stream or one whose data names it (an order's
    payment events carry its ``order_id``); with ``entity_type`` it matches that stream only.
    """

    __slots__ = ("entity_id", "entity_type", "event_types", "stream_types")

    def __init__(self, event_type: str | None, entity_type: str | None, entity_id: str | None) -> None:
        self.event_types: set[str] = set()
        self.stream_types: set[str] = set()
        for raw in (event_type or "").split(","):
            name = raw.strip()
            if not name:
                continue
            name = LEGACY_CATEGORIES.get(name, name)
            if name in EVENT_TYPES:
                self.event_types.add(name)
            elif name in STREAM_TYPES:
                self.stream_types.add(name)
            else:
                raise ValueError(f"unknown event type {raw.strip()!r}")
        if entity_type is not None and entity_type not in STREAM_TYPES:
            raise ValueError(f"unknown entity type {entity_type!r}")
        self.entity_type = entity_type
        self.entity_id = entity_id or None

    def matches(self, event: RecordedEvent) -> bool:
        if (self.event_types or self.stream_types) and not (
            event.event_type in self.event_types or event.stream_type in self.stream_types
        ):
            return False
        if self.entity_type is not None and event.stream_type != self.entity_type:
            return False
        if self.entity_id is None:
            return True
        if event.stream_id == self.entity_id:
            return True
        if self.entity_type is not None:
            return False
        data = event.data
        return any(data.get(f) == self.entity_id for f in ID_FIELDS)


class StreamSlots:
    """At most ``limit`` concurrent streams per tenant."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}
        self._lock = threading.Lock()

    def acquire(self, tenant: str) -> bool:
        with self._lock:
            n = self._open.get(tenant, 0)
            if n >= self.limit:
                return False
            self._open[tenant] = n + 1
            return True

    def release(self, tenant: str) -> None:
        with self._lock:
            n = self._open.get(tenant, 0) - 1
            if n > 0:
                self._open[tenant] = n
            else:
                self._open.pop(tenant, None)

    def open(self, tenant: str) -> int:
        with self._lock:
            return self._open.get(tenant, 0)


Listener = Callable[[Sequence[RecordedEvent], int], None]


class AppliedEventHub:
    def __init__(
        self,
        capacity: int = 20_000,
        previous_watermark: Callable[[], int] = lambda: 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.capacity = capacity
        self._previous_watermark = previous_watermark
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[int, Applied] = {}
        self._published: deque[Applied] = deque()
        self._watermark = 0
        # every position in (covered_from, watermark] that was published is in _published
        self._covered_from: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None
        self._listeners: list[Listener] = []

    # ---- wiring -------------------------------------------------------------------------
    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._changed = asyncio.Event()

    def add_listener(self, listener: Listener) -> None:
        """``listener(published_events, watermark)``: called in position order, in the projector thread."""
        self._listeners = [*self._listeners, listener]

    # ---- the projector side ---------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self._covered_from is not None

    def on_applied(self, events: Sequence[RecordedEvent], watermark: int) -> None:
        """An applied batch and the watermark about to be published (``previous_watermark()`` is
        still the one before: the hub starts covering positions from there)."""
        now = self._clock()
        with self._lock:
            if self._covered_from is None:
                self._covered_from = max(self._previous_watermark(), self._watermark)
                self._watermark = self._covered_from
            for e in events:
                if e.position > self._watermark:
                    self._pending[e.position] = Applied(e, now)
            if watermark <= self._watermark:
                return
            ready = sorted(p for p in self._pending if p <= watermark)
            published = [self._pending.pop(p) for p in ready]
            self._published.extend(published)
            while len(self._published) > self.capacity:
                dropped = self._published.popleft()
                self._covered_from = dropped.event.position
            self._watermark = watermark
        if published:
            batch = [a.event for a in published]
            for listener in self._listeners:
                listener(batch, watermark)
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed (shutdown)
                self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        if changed is not None:
            changed.set()

    # ---- the reader side -------------------------------------------------------------------
    @property
    def watermark(self) -> int:
        return self._watermark

    def since(self, after: int, limit: int = 1000) -> tuple[list[Applied], int] | None:
        """Published events with position > ``after`` (up to ``limit``) and the position the reader
        has then seen everything up to; None when the buffer no longer covers ``after`` (replay from
        the store)."""
        with self._lock:
            if self._covered_from is None or after < self._covered_from:
                return None
            wm = self._watermark
            if after >= wm:
                return [], after
            out: list[Applied] = []
            # published positions grow: walk back from the newest until ``after``
            for a in reversed(self._published):
                if a.event.position <= after:
                    break
                out.append(a)
            out.reverse()
            if len(out) > limit:
                out = out[:limit]
                return out, out[-1].event.position
            return out, wm

    def applied_at(self, positions: Iterable[int]) -> dict[int, float]:
        """When each of ``positions`` was applied, for those still in the buffer."""
        wanted = set(positions)
        if not wanted:
            return {}
        lo = min(wanted)
        found: dict[int, float] = {}
        with self._lock:
            for a in reversed(self._published):
                p = a.event.position
                if p < lo:
                    break
                if p in wanted:
                    found[p] = a.applied_at
        return found

    async def wait(self, timeout: float) -> bool:
        """Until the next publish (True) or ``timeout`` (False)."""
        changed = self._changed
        if changed is None:
            await asyncio.sleep(timeout)
            return False
        try:
            await asyncio.wait_for(changed.wait(), timeout)
        except TimeoutError:
            return False
        return True


REPLAY_PAGE = 500


class EventFeed:
    """One tenant's applied events after a cursor, in position order, never past the published
    watermark: from the hub's buffer while it still covers the cursor, else replayed from the event
    store a page at a time. A reader keeps the cursor it is handed back (its ``Last-Event-ID``)."""

    def __init__(
        self, hub: AppliedEventHub, log: EventLog, progress: ServingProgress, page: int = REPLAY_PAGE
    ) -> None:
        self.hub = hub
        self.log = log
        self.progress = progress
        self.page = page

    def bound(self) -> int:
        """The published watermark: what a reader may be sent up to (and where a new reader starts)."""
        return self.hub.watermark if self.hub.started else self.progress.watermark

    async def wait(self, timeout: float) -> bool:
        """Until the hub publishes more (True) or ``timeout`` passes (False)."""
        return await self.hub.wait(timeout)

    def poll(self, tenant: str, cursor: int) -> tuple[list[RecordedEvent], int] | None:
        """(events after ``cursor``, the new cursor) from memory; ``([], cursor)`` when nothing is new;
        None when the buffer no longer covers ``cursor`` (``replay`` reads the store)."""
        if cursor >= self.bound():
            return [], cursor
        buffered = self.hub.since(cursor, self.page)
        if buffered is None:
            return None
        applied, seen = buffered
        return [a.event for a in applied if a.event.tenant_id == tenant], seen

    def replay(self, tenant: str, cursor: int) -> tuple[list[RecordedEvent], int]:
        """(the next page of the tenant's events after ``cursor`` from the event store, the new
        cursor); blocking."""
        bound = self.bound()
        events = self.log.read_all(
            after_position=cursor, limit=self.page, tenant_id=tenant, max_position=bound
        )
        return events, (events[-1].position if len(events) == self.page else bound)

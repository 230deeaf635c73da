"""In-process read cache, invalidated by exactly what applied events move.

Metric entries drop when an event of a type the metric's contract declares (``moved_by`` in
readmodels/contracts, i.e. ``MetricDef.source_events``) is applied for the same tenant;
windowed metrics also age out after ``ttl`` because their windows slide with the clock.
Entity entries drop when an event of their own stream, or of a stream that feeds them
(projections/feeds.py: an order feeds its user), is applied.
A value computed while an invalidation for its key arrived is not stored, so the
cache never holds a value older than the events already applied.

``metric_value`` / ``entity_value`` are how readers use it on the event loop: a hit is served, concurrent
misses of one key share one computation (single flight), and a hot metric entry past half its life is
served while one computation refreshes it (refresh-ahead).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from anyio import to_thread

from domain.events import RecordedEvent
from projections.feeds import LINKS_FROM, Link

log = logging.getLogger(__name__)

MetricKey = tuple[str, str, str, str]  # tenant, metric, window, currency
EntityKey = tuple[str, str, str]  # tenant, entity type, id


@dataclass(slots=True)
class _Entry:
    value: Any
    stored_at: float


class ReadCache:
    def __init__(
        self,
        metric_sources: Mapping[str, Iterable[str]],
        metric_ttl_s: float = 1.0,
        max_entries: int = 50_000,
        refresh_after_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # event type -> metrics it moves
        self._moved_by: dict[str, set[str]] = {}
        for metric, events in metric_sources.items():
            for event_type in events:
                self._moved_by.setdefault(event_type, set()).add(metric)
        self._ttl = metric_ttl_s
        # a hit older than this asks the caller to recompute in the background (refresh-ahead), so a
        # popular windowed metric never expires under load and readers never queue behind its query
        self._refresh_after = metric_ttl_s / 2 if refresh_after_s is None else refresh_after_s
        self._max = max_entries
        self._clock = clock  # ages metric entries (seconds, monotonic)
        self._lock = threading.Lock()
        self._metrics: OrderedDict[MetricKey, _Entry] = OrderedDict()
        self._entities: OrderedDict[EntityKey, _Entry] = OrderedDict()
        self._generation = 0
        self._metric_gen: dict[tuple[str, str], int] = {}
        self._entity_gen: dict[EntityKey, int] = {}
        # (tenant, entity type) -> generation of the last event whose linked entity was not known
        self._tenant_type_gen: dict[tuple[str, str], int] = {}
        self._entity_floor = -1  # generation of the last _entity_gen reset: older reads are stale
        self._metric_floor = -1  # generation of the last clear(): older metric reads are stale
        # (tenant, stream type, stream id, entity type) -> the entity the stream feeds (its link's event)
        self._linked: dict[tuple[str, str, str, str], str] = {}
        self.hits = 0
        self.misses = 0
        self.flights: dict[Hashable, Any] = {}  # in-flight recomputations; the API event loop's own

    # ---- reads -------------------------------------------------------------------
    def generation(self) -> int:
        return self._generation

    def get_metric(self, key: MetricKey) -> Any | None:
        return self.lookup_metric(key)[0]

    def lookup_metric(self, key: MetricKey) -> tuple[Any | None, bool]:
        """(value or None, refresh due): a hit past ``refresh_after_s`` is still served."""
        with self._lock:
            entry = self._metrics.get(key)
            if entry is None:
                self.misses += 1
                return None, False
            age = self._clock() - entry.stored_at
            if age > self._ttl:
                self.misses += 1
                return None, False
            self.hits += 1
            return entry.value, age > self._refresh_after

    def metric_valid_since(self, key: MetricKey, gen: int) -> bool:
        """True when nothing that moves ``key`` was invalidated after generation ``gen``: a value
        computed from a read started at ``gen`` reflects every event applied so far."""
        return gen >= self._metric_floor and self._metric_gen.get((key[0], key[1]), -1) <= gen

    def put_metric(self, key: MetricKey, value: Any, computed_from_gen: int) -> None:
        with self._lock:
            if not self.metric_valid_since(key, computed_from_gen):
                return
            self._metrics[key] = _Entry(value, self._clock())
            self._metrics.move_to_end(key)
            if len(self._metrics) > self._max:
                self._metrics.popitem(last=False)

    def get_entity(self, key: EntityKey) -> Any | None:
        with self._lock:
            entry = self._entities.get(key)
            if entry is None:
                self.misses += 1
                return None
            self.hits += 1
            return entry.value

    def entity_valid_since(self, key: EntityKey, gen: int) -> bool:
        if gen < self._entity_floor or self._entity_gen.get(key, -1) > gen:
            return False
        return self._tenant_type_gen.get((key[0], key[1]), -1) <= gen

    def put_entity(self, key: EntityKey, value: Any, computed_from_gen: int) -> None:
        with self._lock:
            if not self.entity_valid_since(key, computed_from_gen):
                return
            self._entities[key] = _Entry(value, self._clock())
            self._entities.move_to_end(key)
            if len(self._entities) > self._max:
                self._entities.popitem(last=False)

    # ---- invalidation ------------------------------------------------------------
    def clear(self) -> None:
        """Forget every entry (after a read-model swap); a value read before this is never stored."""
        with self._lock:
            self._generation += 1
            self._metric_floor = self._entity_floor = self._generation
            self._metrics.clear()
            self._entities.clear()
            self._metric_gen.clear()
            self._entity_gen.clear()
            self._tenant_type_gen.clear()
            self._linked.clear()

    def invalidate_metric(self, tenant: str, metric: str) -> None:
        """For inputs that are not events (rejected commands move error_rate)."""
        with self._lock:
            self._generation += 1
            self._metric_gen[(tenant, metric)] = self._generation
            for key in [k for k in self._metrics if k[0] == tenant and k[1] == metric]:
                del self._metrics[key]

    def invalidate(self, events: Iterable[RecordedEvent]) -> None:
        with self._lock:
            self._generation += 1
            gen = self._generation
            metrics_hit: set[tuple[str, str]] = set()
            entities_hit: set[EntityKey] = set()
            all_of: set[tuple[str, str]] = set()  # (tenant, entity type): every cached one may be stale
            for event in events:
                tenant = event.tenant_id
                for metric in self._moved_by.get(event.event_type, ()):
                    metrics_hit.add((tenant, metric))
                entities_hit.add((tenant, event.stream_type, event.stream_id))
                for link in LINKS_FROM.get(event.stream_type, ()):
                    self._touch_linked(link, event, entities_hit, all_of)
            for mk in metrics_hit:
                self._metric_gen[mk] = gen
            if metrics_hit:
                for mkey in [k for k in self._metrics if (k[0], k[1]) in metrics_hit]:
                    del self._metrics[mkey]
            for ek in entities_hit:
                self._entity_gen[ek] = gen
                self._entities.pop(ek, None)
            for tenant, entity_type in all_of:
                self._tenant_type_gen[(tenant, entity_type)] = gen
                for ekey in [k for k in self._entities if k[0] == tenant and k[1] == entity_type]:
                    del self._entities[ekey]
            if len(self._entity_gen) > 4 * self._max:
                # older generations only matter for in-flight reads: those now count as stale
                self._entity_gen.clear()
                self._entity_floor = gen
                self._metric_gen = {k: gen for k in self._metric_gen}

    def _touch_linked(
        self, link: Link, event: RecordedEvent, entities_hit: set[EntityKey], all_of: set[tuple[str, str]]
    ) -> None:
        """The entity ``event``'s stream feeds through ``link``: named by this event, or remembered from
        the stream's earlier naming event; unknown (e.g. after a restart): all of its type may be stale."""
        tenant = event.tenant_id
        key = (tenant, event.stream_type, event.stream_id, link.entity_type)
        named = link.named_by(event)
        if named:
            self._linked[key] = named
            if len(self._linked) > 4 * self._max:
                self._linked.clear()
        linked = self._linked.get(key)
        if linked:
            entities_hit.add((tenant, link.entity_type, linked))
        else:
            all_of.add((tenant, link.entity_type))


# ---- single flight: concurrent misses of one key share one read-model query --------------------
class _Flight:
    __slots__ = ("gen", "task")

    def __init__(self, gen: int, task: asyncio.Task[Any]) -> None:
        self.gen = gen
        self.task = task


def _flight(
    cache: ReadCache,
    key: Hashable,
    valid_since: Callable[[int], bool],
    compute: Callable[[], Any],
    store: Callable[[Any, int], None],
) -> asyncio.Task[Any]:
    """The in-flight computation of ``key``, started now unless one is running that began after the
    last invalidation of ``key`` (``valid_since(flight.gen)``): joining it then is as fresh as starting
    anew, so a reader that passed ``min_position`` never gets a value older than that position."""
    flights = cache.flights
    current = flights.get(key)
    if current is not None and valid_since(current.gen):
        return current.task
    gen = cache.generation()

    async def run() -> Any:
        value = await to_thread.run_sync(compute)
        store(value, gen)
        return value

    task = asyncio.ensure_future(run())
    flight = _Flight(gen, task)
    flights[key] = flight

    def done(t: asyncio.Task[Any]) -> None:
        if flights.get(key) is flight:
            del flights[key]
        if not t.cancelled() and t.exception() is not None:
            log.debug("read of %r failed: %s", key, t.exception())

    task.add_done_callback(done)
    return task


async def metric_value(cache: ReadCache, key: MetricKey, compute: Callable[[], Any]) -> Any:
    """The cached value of ``key``, else ``compute()`` (in a worker thread, shared by concurrent misses)."""
    value, refresh_due = cache.lookup_metric(key)
    if value is not None and not refresh_due:
        return value

    def valid(gen: int) -> bool:
        return cache.metric_valid_since(key, gen)

    def store(v: Any, gen: int) -> None:
        cache.put_metric(key, v, gen)

    task = _flight(cache, ("metric", key), valid, compute, store)
    if value is not None:  # refresh-ahead: serve the still-valid entry, the flight refreshes it
        return value
    return await asyncio.shield(task)


async def entity_value(cache: ReadCache, key: EntityKey, compute: Callable[[], Any]) -> Any:
    """The cached entity of ``key``, else ``compute()`` (None, "no such entity", is not cached)."""
    found = cache.get_entity(key)
    if found is not None:
        return found

    def valid(gen: int) -> bool:
        return cache.entity_valid_since(key, gen)

    def store(v: Any, gen: int) -> None:
        if v is not None:
            cache.put_entity(key, v, gen)

    return await asyncio.shield(_flight(cache, ("entity", key), valid, compute, store))

"""ReadCache + the read routes' single flight: a read that waited for position N never gets a value
computed before N was applied, however reads, recomputations and writes interleave."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import threading
from datetime import UTC, datetime
from typing import Any

from domain.events import EVENT_TYPES, RecordedEvent
from readmodels.contract_registry import REGISTRY
from readmodels.metrics import METRICS
from readmodels.read_cache import ReadCache
from readmodels.read_cache import entity_value as _entity_value
from readmodels.read_cache import metric_value as _metric_value

T = "t1"
KEY = (T, "order_count", "1h", "USD")


def ev(
    position: int, event_type: str = "OrderPlaced", stream_type: str = "order", data: Any = None
) -> RecordedEvent:
    now = datetime.now(UTC)
    return RecordedEvent(
        position,
        T,
        stream_type,
        f"S-{position}",
        1,
        f"e-{position}",
        event_type,
        1,
        data or {},
        now,
        now,
        position,
        {},
    )


def cache(**kw: Any) -> ReadCache:
    return ReadCache({"order_count": ("OrderPlaced",), "conversion_rate": ("PageViewed",)}, **kw)


class ManualClock:
    """The cache's clock, moved only by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


HANG_S = 60.0  # bounds a hang of the handshakes below; never reached when the code is right


class Model:
    """A read model plus projector: apply (write rows), invalidate, then publish the watermark,
    in the order ProjectionRunner.step and Runtime._on_applied use.

    The writer interleaves with the readers explicitly (no sleeps): before each position it either
    waits for ``reads_between`` more completed reads, or asks the next read (a read-model query) to
    park after it took its value, and applies the position while that query is still running — the
    write lands inside the query, the race the cache's generations guard against."""

    def __init__(self, c: ReadCache) -> None:
        self.cache = c
        self.value = 0  # "order_count": the number of applied positions
        self.watermark = 0
        self.state = threading.Condition()
        self.reads_done = 0
        self.overlaps = 0  # positions applied while a query was parked on them
        self._want_overlap = False
        self._parked = False
        self._finished = False

    def apply(self, position: int) -> None:
        self.value = position  # the row write (ClickHouse INSERT)
        self.cache.invalidate([ev(position)])
        with self.state:
            self.watermark = position
            self.state.notify_all()

    def read(self) -> int:
        before = self.value
        with self.state:
            if self._want_overlap:  # a slow query: the next write lands while it runs
                self._want_overlap = False
                self._parked = True
                self.state.notify_all()
                assert self.state.wait_for(lambda: self.value > before or self._finished, HANG_S)
        return before

    def read_done(self) -> None:
        with self.state:
            self.reads_done += 1
            self.state.notify_all()

    def write(self, last: int, rng: random.Random, reads_between: int, overlap_share: float) -> None:
        """Apply positions 1..last. Before each position the writer waits for what it asked for
        when it applied the previous one: ``reads_between`` more completed reads, or (a share of
        ``overlap_share``) a query that took its value and is parked until this position lands. A
        query does start after every position: each one invalidates the metric."""
        try:
            overlap = False
            target = reads_between
            for p in range(1, last + 1):
                with self.state:
                    if overlap:
                        assert self.state.wait_for(lambda: self._parked, HANG_S), "no query parked"
                        self._parked = False
                        self.overlaps += 1
                    else:
                        assert self.state.wait_for(lambda t=target: self.reads_done >= t, HANG_S), "no reads"
                    overlap = p < last and rng.random() < overlap_share
                    self._want_overlap = overlap
                    target = self.reads_done + reads_between
                self.apply(p)
        finally:  # also when a wait failed: the readers stop
            with self.state:
                self._finished = True
                self.state.notify_all()

    def finished(self) -> bool:
        with self.state:
            return self._finished


def test_metric_hit_ttl_and_refresh_due() -> None:
    clock = ManualClock()  # steps are binary fractions: the ages below are exact
    c = cache(metric_ttl_s=1.0, refresh_after_s=0.25, clock=clock)
    assert c.lookup_metric(KEY) == (None, False)
    c.put_metric(KEY, {"v": 1}, c.generation())
    assert c.lookup_metric(KEY) == ({"v": 1}, False)
    clock.advance(0.25)
    assert c.lookup_metric(KEY) == ({"v": 1}, False)  # at refresh_after_s: not yet due
    clock.advance(0.125)
    assert c.lookup_metric(KEY) == ({"v": 1}, True)  # still served, refresh asked for
    clock.advance(0.625)
    assert c.lookup_metric(KEY) == ({"v": 1}, True)  # at the ttl: still served
    clock.advance(0.125)
    assert c.lookup_metric(KEY) == (None, False)  # past the ttl: a miss
    c.put_metric(KEY, {"v": 2}, c.generation())  # a new entry ages from its own store
    assert c.lookup_metric(KEY) == ({"v": 2}, False)


def test_put_computed_before_an_invalidation_is_dropped() -> None:
    c = cache()
    gen = c.generation()
    c.invalidate([ev(1)])
    assert not c.metric_valid_since(KEY, gen)
    c.put_metric(KEY, {"v": 0}, gen)
    assert c.get_metric(KEY) is None
    # an event of an unrelated type leaves the metric alone
    gen = c.generation()
    c.invalidate([ev(2, "PageViewed", "session")])
    assert c.metric_valid_since(KEY, gen)
    c.put_metric(KEY, {"v": 1}, gen)
    assert c.get_metric(KEY) == {"v": 1}


def test_entity_generations_survive_the_bookkeeping_reset() -> None:
    c = ReadCache({}, max_entries=2)
    key = (T, "order", "S-1")
    gen = c.generation()
    c.invalidate([ev(p) for p in range(1, 20)])  # > 4 * max_entries: the per-entity map is reset
    assert not c.entity_valid_since(key, gen)
    c.put_entity(key, {"stale": True}, gen)
    assert c.get_entity(key) is None
    c.put_entity(key, {"fresh": True}, c.generation())
    assert c.get_entity(key) == {"fresh": True}


def test_threaded_readers_never_see_a_value_older_than_their_min_position() -> None:
    """The protocol of the read routes, with OS threads: wait for N, get or (gen, compute, put)."""
    c = cache(metric_ttl_s=10.0, clock=ManualClock())
    model = Model(c)
    violations: list[tuple[int, int]] = []
    last, reads_between = 400, 4

    def reader() -> None:
        while not model.finished():
            n = model.watermark  # a read with min_position=n, already satisfied
            value = c.get_metric(KEY)
            if value is None:
                gen = c.generation()
                value = model.read()
                c.put_metric(KEY, value, gen)
            if value < n:
                violations.append((n, value))
            model.read_done()

    writer = threading.Thread(target=model.write, args=(last, random.Random(7), reads_between, 0.5))
    threads = [writer] + [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG_S)
    assert not any(t.is_alive() for t in threads)
    assert model.watermark == last  # the writer got through (its waits would have raised)
    assert not violations, violations[:5]
    assert model.overlaps > 50  # writes landed inside queries: the race was run, not just possible
    assert model.reads_done >= reads_between * (last - 1 - model.overlaps) > 100


def test_single_flight_readers_under_concurrent_writes() -> None:
    """_metric_value/_entity_value (shared in-flight reads, refresh-ahead) keep read-your-writes,
    and concurrent misses share one computation."""
    clock = ManualClock()
    refresh_after = 0.25
    c = cache(metric_ttl_s=1.0, refresh_after_s=refresh_after, clock=clock)
    model = Model(c)
    runtime = c  # the cache itself
    computes = [0]
    counted = threading.Lock()
    violations: list[tuple[str, int, int]] = []
    rng = random.Random(11)  # used on the event loop only
    last, reads_between = 300, 48

    def compute() -> int:
        with counted:
            computes[0] += 1
        return model.read()

    async def main() -> int:
        async def reader(i: int) -> int:
            count = 0
            while not model.finished():
                n = model.watermark
                if i % 3 == 0:  # entity reads: cached until invalidated
                    key = (T, "order", f"S-{n}") if n else (T, "order", "S-0")
                    value = await _entity_value(runtime, key, compute)
                    # every event moves its own order entity; the value must include position n
                    if value < n:
                        violations.append(("entity", n, value))
                else:
                    value = await _metric_value(runtime, KEY, compute)
                    if value < n:
                        violations.append(("metric", n, value))
                count += 1
                model.read_done()
                # time passes only between reads, and by less than refresh_after / 8 per read: a
                # cached metric ages into refresh-ahead (rarely past the ttl) while reads go on
                clock.advance(rng.uniform(0, refresh_after / 8))
                await asyncio.sleep(0)  # a yield to the other readers, not a wait
            return count

        writer = threading.Thread(target=model.write, args=(last, random.Random(5), reads_between, 1 / 3))
        writer.start()
        try:
            counts = await asyncio.gather(*(reader(i) for i in range(24)))
        finally:
            await asyncio.to_thread(writer.join, HANG_S)
        assert not writer.is_alive() and model.watermark == last
        # refreshes the last reads started may still run: wait for exactly those, then every flight
        # must have removed itself
        await asyncio.gather(*(f.task for f in list(c.flights.values())), return_exceptions=True)
        assert not c.flights
        return sum(counts)

    total = asyncio.run(main())
    assert not violations, violations[:5]
    assert model.overlaps > 50
    assert total >= reads_between * (last - 1 - model.overlaps) > 500
    assert computes[0] < total / 2, (computes[0], total)  # misses were shared


def test_concurrent_misses_share_one_computation() -> None:
    c = cache()
    runtime = c  # the cache itself
    release = threading.Event()
    started = threading.Event()
    calls = [0]

    def compute() -> int:
        calls[0] += 1
        started.set()
        assert release.wait(HANG_S)
        return 42

    async def main() -> list[Any]:
        first = asyncio.ensure_future(_metric_value(runtime, KEY, compute))
        assert await asyncio.to_thread(started.wait, HANG_S)
        # the query is running: every further miss of the key joins it
        rest = [asyncio.ensure_future(_metric_value(runtime, KEY, compute)) for _ in range(9)]
        await asyncio.sleep(0)  # a yield: the queued reads run up to their await
        # all ten missed (lookup and joining a flight are one step, no await between) while the
        # query still ran, and there is one flight
        assert c.misses == 10 and len(c.flights) == 1 and not any(t.done() for t in rest)
        release.set()
        return await asyncio.gather(first, *rest)

    assert asyncio.run(main()) == [42] * 10
    assert calls[0] == 1 and not c.flights and c.get_metric(KEY) == 42


def test_a_failed_flight_is_not_cached_and_fails_its_waiters_only() -> None:
    c = cache()
    runtime = c  # the cache itself
    calls = [0]

    def boom() -> int:
        calls[0] += 1
        raise RuntimeError("chdb down")

    async def main() -> list[Any]:
        reads = (_metric_value(runtime, KEY, boom) for _ in range(5))
        return await asyncio.gather(*reads, return_exceptions=True)

    results = asyncio.run(main())
    assert all(isinstance(r, RuntimeError) for r in results)
    assert calls[0] == 1 and not c.flights and c.get_metric(KEY) is None
    assert asyncio.run(_metric_value(runtime, KEY, lambda: 7)) == 7


def test_contract_driven_invalidation_is_exact_per_metric_event_type_and_tenant() -> None:
    """A cached metric drops exactly when an event of a type its contract declares is applied for its
    tenant: never for another tenant, never for an undeclared type (the graph test proves undeclared
    types cannot move the value, so keeping the entry there is correct)."""
    sources = {name: REGISTRY.current(name).moved_by for name in REGISTRY.names("metric")}
    assert sources == {name: m.source_events for name, m in METRICS.items()}
    for event_type, (stream_type, _, _) in EVENT_TYPES.items():
        c = ReadCache(sources, metric_ttl_s=60)
        keys = {name: (T, name, "1h", "USD") for name in sources}
        for key in keys.values():
            c.put_metric(key, {"v": 1}, c.generation())
        c.invalidate([dataclasses.replace(ev(1, event_type, stream_type), tenant_id="t2")])
        assert all(c.get_metric(k) is not None for k in keys.values()), event_type
        c.invalidate([ev(2, event_type, stream_type)])
        for name, key in keys.items():
            dropped = c.get_metric(key) is None
            assert dropped == (event_type in sources[name]), (name, event_type)

"""ReadCache + the read routes' single flight: a read that waited for position N never gets a value
computed before N was applied, however reads, recomputations and writes interleave."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import threading
import time
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from domain.events import EVENT_TYPES, RecordedEvent
from readmodels.contract_registry import REGISTRY
from readmodels.metrics import METRICS
from services.api.read_routes import _entity_value, _metric_value
from services.read_cache import ReadCache

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


class Model:
    """A read model plus projector: apply (write rows), invalidate, then publish the watermark,
    in the order ProjectionRunner.step and Runtime._on_applied use."""

    def __init__(self, c: ReadCache) -> None:
        self.cache = c
        self.value = 0  # "order_count": the number of applied positions
        self.watermark = 0
        self.changed = threading.Condition()

    def apply(self, position: int) -> None:
        self.value = position  # the row write (ClickHouse INSERT)
        self.cache.invalidate([ev(position)])
        with self.changed:
            self.watermark = position
            self.changed.notify_all()

    def read(self) -> int:
        before = self.value
        time.sleep(random.uniform(0, 0.002))  # a slow query: writes land while it runs
        return before


def test_metric_hit_ttl_and_refresh_due() -> None:
    c = cache(metric_ttl_s=0.2, refresh_after_s=0.05)
    assert c.lookup_metric(KEY) == (None, False)
    c.put_metric(KEY, {"v": 1}, c.generation())
    assert c.lookup_metric(KEY) == ({"v": 1}, False)
    time.sleep(0.07)
    assert c.lookup_metric(KEY) == ({"v": 1}, True)  # still served, refresh asked for
    time.sleep(0.15)
    assert c.lookup_metric(KEY) == (None, False)


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
    c = cache(metric_ttl_s=10.0)
    model = Model(c)
    stop = threading.Event()
    violations: list[tuple[int, int]] = []
    reads = [0]

    def writer() -> None:
        for p in range(1, 400):
            model.apply(p)
            time.sleep(random.uniform(0, 0.001))
        stop.set()

    def reader() -> None:
        while not stop.is_set():
            n = model.watermark  # a read with min_position=n, already satisfied
            value = c.get_metric(KEY)
            if value is None:
                gen = c.generation()
                value = model.read()
                c.put_metric(KEY, value, gen)
            reads[0] += 1
            if value < n:
                violations.append((n, value))

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert reads[0] > 100
    assert not violations, violations[:5]


def test_single_flight_readers_under_concurrent_writes() -> None:
    """_metric_value/_entity_value (shared in-flight reads, refresh-ahead) keep read-your-writes,
    and concurrent misses share one computation."""
    c = cache(metric_ttl_s=0.05, refresh_after_s=0.01)
    model = Model(c)
    runtime: Any = SimpleNamespace(cache=c)
    computes = [0]
    violations: list[tuple[str, int, int]] = []

    def compute() -> int:
        computes[0] += 1
        return model.read()

    async def main() -> int:
        loop = asyncio.get_running_loop()
        done = threading.Event()
        position_changed = asyncio.Event()

        def writer() -> None:
            for p in range(1, 300):
                model.apply(p)
                loop.call_soon_threadsafe(position_changed.set)
                time.sleep(random.uniform(0, 0.002))
            done.set()

        async def reader(i: int) -> int:
            count = 0
            while not done.is_set():
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
                if random.random() < 0.3:
                    await asyncio.sleep(0)
                else:
                    position_changed.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(position_changed.wait(), 0.002)
            return count

        thread = threading.Thread(target=writer)
        thread.start()
        counts = await asyncio.gather(*(reader(i) for i in range(24)))
        thread.join()
        await asyncio.sleep(0.05)  # let background refreshes finish
        assert not c.flights
        return sum(counts)

    total = asyncio.run(main())
    assert not violations, violations[:5]
    assert total > 500
    assert computes[0] < total / 2, (computes[0], total)  # misses were shared


def test_a_failed_flight_is_not_cached_and_fails_its_waiters_only() -> None:
    c = cache()
    runtime: Any = SimpleNamespace(cache=c)
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

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import pytest
from fakes import InMemoryEventStore

from commands import AggregateCache, CommandContext, DomainError, execute
from commands.ports import AppendResult, IdempotencyRecord, StreamWrite, VersionConflict
from domain.product import Product

T = "acme"


def ctx(store: Any, cache: AggregateCache, if_match: int | None = None) -> CommandContext:
    return CommandContext(T, store, {}, if_match=if_match, cache=cache)


def setup_shop(store: Any, cache: AggregateCache, stock: int = 100) -> None:
    execute(
        ctx(store, cache),
        "product.register",
        None,
        {"product_id": "PROD-001", "name": "W", "category": "c", "price": "1", "currency": "USD"},
    )
    execute(ctx(store, cache), "product.restock", "PROD-001", {"quantity": stock})
    execute(ctx(store, cache), "user.register", None, {"user_id": "USR-00001"})


def place(store: Any, cache: AggregateCache, qty: int = 1) -> str:
    return execute(
        ctx(store, cache),
        "order.place",
        None,
        {
            "user_id": "USR-00001",
            "currency": "USD",
            "lines": [{"product_id": "PROD-001", "quantity": qty, "unit_price": "1"}],
        },
    ).entity_id


def product_loads(store: InMemoryEventStore) -> list[tuple[int, int]]:
    return [(after, n) for st, sid, after, n in store.load_calls if (st, sid) == ("product", "PROD-001")]


def test_hot_stream_is_refreshed_incrementally() -> None:
    store, cache = InMemoryEventStore(), AggregateCache()
    setup_shop(store, cache)
    store.load_calls.clear()
    for _ in range(3):
        place(store, cache)
    # each order loads only what is newer than the cached version: nothing, since the cache
    # was updated with the appended events
    assert product_loads(store) == [(2, 0), (3, 0), (4, 0)]
    version, agg = cache.get((T, "product", "PROD-001")) or (0, None)
    assert version == 5 and isinstance(agg, Product) and agg.reserved == 3


def test_cache_picks_up_events_written_elsewhere() -> None:
    store, cache = InMemoryEventStore(), AggregateCache()
    setup_shop(store, cache)
    other = AggregateCache()  # another process
    place(store, other, qty=5)
    store.load_calls.clear()
    place(store, cache, qty=1)
    assert product_loads(store) == [(2, 1)]  # one new event read, no refold from version 1
    _, agg = cache.get((T, "product", "PROD-001")) or (0, None)
    assert isinstance(agg, Product) and agg.reserved == 6


def test_failed_append_does_not_cache_decided_state() -> None:
    store, cache = InMemoryEventStore(), AggregateCache()
    setup_shop(store, cache, stock=1)
    store.fail_next_append = RuntimeError("database went away")
    with pytest.raises(RuntimeError):
        place(store, cache)
    version, agg = cache.get((T, "product", "PROD-001")) or (0, None)
    assert version == 2 and isinstance(agg, Product) and agg.reserved == 0
    place(store, cache)  # the one unit is still available
    with pytest.raises(DomainError) as exc:
        place(store, cache)
    assert exc.value.code == "insufficient_stock"


class RacingStore(InMemoryEventStore):
    """Lets another writer append to a stream right before our first append."""

    def __init__(self) -> None:
        super().__init__()
        self.race: list[Any] = []

    def append(
        self,
        tenant_id: str,
        writes: Sequence[StreamWrite],
        metadata: dict[str, Any],
        idempotency: IdempotencyRecord | None = None,
    ) -> AppendResult:
        while self.race:
            self.race.pop(0)()
        return super().append(tenant_id, writes, metadata, idempotency)


def test_lost_race_on_secondary_stream_is_retried() -> None:
    store, cache = RacingStore(), AggregateCache()
    setup_shop(store, cache, stock=3)
    store.race.append(lambda: place(store, AggregateCache(), qty=2))
    oid = place(store, cache, qty=1)
    assert store.types(T, "order", oid) == ["OrderPlaced"]
    _, agg = cache.get((T, "product", "PROD-001")) or (0, None)
    assert isinstance(agg, Product) and (agg.reserved, agg.available) == (3, 0)
    # the retry re-decides against fresh state: now out of stock
    store.race.append(lambda: place(store, AggregateCache(), qty=1))
    with pytest.raises(DomainError) as exc:
        place(store, cache, qty=1)
    assert exc.value.code == "insufficient_stock"


def test_lost_race_with_if_match_is_a_conflict() -> None:
    store, cache = RacingStore(), AggregateCache()
    setup_shop(store, cache)
    store.race.append(
        lambda: execute(ctx(store, AggregateCache()), "product.restock", "PROD-001", {"quantity": 1})
    )
    with pytest.raises(VersionConflict) as exc:
        execute(ctx(store, cache, if_match=2), "product.restock", "PROD-001", {"quantity": 5})
    assert (exc.value.expected, exc.value.actual) == (2, 3)
    assert [e.data.get("quantity") for e in store.stream(T, "product", "PROD-001")][1:] == [100, 1]


def test_if_match() -> None:
    store, cache = InMemoryEventStore(), AggregateCache()
    setup_shop(store, cache)
    before = len(store.events)
    with pytest.raises(VersionConflict) as exc:
        execute(ctx(store, cache, if_match=1), "product.restock", "PROD-001", {"quantity": 5})
    assert (exc.value.stream_type, exc.value.stream_id, exc.value.expected, exc.value.actual) == (
        "product",
        "PROD-001",
        1,
        2,
    )
    assert len(store.events) == before
    r = execute(ctx(store, cache, if_match=2), "product.restock", "PROD-001", {"quantity": 5})
    assert r.stream_version == 3
    # creation: the new stream is at version 0
    with pytest.raises(VersionConflict):
        execute(ctx(store, cache, if_match=3), "user.register", None, {"user_id": "USR-00002"})
    assert execute(ctx(store, cache, if_match=0), "user.register", None, {"user_id": "USR-00002"}).created


def test_cache_ahead_of_a_reset_store_heals() -> None:
    cache = AggregateCache()
    old = InMemoryEventStore()
    setup_shop(old, cache)  # cache: PROD-001 at version 2
    new = InMemoryEventStore()
    execute(
        ctx(new, AggregateCache()),
        "product.register",
        None,
        {"product_id": "PROD-001", "name": "W", "category": "c", "price": "1", "currency": "USD"},
    )
    r = execute(ctx(new, cache), "product.restock", "PROD-001", {"quantity": 4})
    assert r.stream_version == 2
    _, agg = cache.get((T, "product", "PROD-001")) or (0, None)
    assert isinstance(agg, Product) and agg.on_hand == 4


def test_lru_bound_and_tenant_keys() -> None:
    cache = AggregateCache(max_streams=2)
    a, b, c = Product(), Product(), Product()
    cache.put(("t", "product", "A"), 1, a)
    cache.put(("t", "product", "B"), 1, b)
    assert cache.get(("t", "product", "A")) == (1, a)  # A is now most recent
    cache.put(("t", "product", "C"), 1, c)
    assert cache.get(("t", "product", "B")) is None
    assert len(cache) == 2
    cache.put(("t", "product", "A"), 0, Product())  # older version never replaces newer
    assert cache.get(("t", "product", "A")) == (1, a)
    assert cache.get(("u", "product", "A")) is None


def test_concurrent_orders_never_oversell() -> None:
    store, cache = InMemoryEventStore(), AggregateCache()
    setup_shop(store, cache, stock=30)
    outcomes: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(10):
            try:
                place(store, cache)
                result = "ok"
            except DomainError as exc:
                result = exc.code
            except VersionConflict:
                result = "conflict"
            with lock:
                outcomes.append(result)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reserved = sum(
        e.data["quantity"] for e in store.stream(T, "product", "PROD-001") if e.event_type == "StockReserved"
    )
    assert reserved == outcomes.count("ok") <= 30
    assert set(outcomes) <= {"ok", "insufficient_stock", "conflict"}
    assert outcomes.count("ok") + outcomes.count("conflict") >= 30 or "insufficient_stock" not in outcomes
    _, agg = cache.get((T, "product", "PROD-001")) or (0, None)
    fresh = Product.fold(store.load_stream(T, "product", "PROD-001"))
    assert isinstance(agg, Product) and agg.reserved == fresh.reserved == reserved

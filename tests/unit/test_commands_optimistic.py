"""Optimistic mode: loads the append's version check makes redundant are skipped, never at the cost of
a wrong outcome (errors and read-only streams are checked against the store)."""

from __future__ import annotations

from typing import Any

import pytest
from fakes import InMemoryEventStore

from commands import AggregateCache, CommandContext, DomainError, execute
from commands.ports import VersionConflict
from domain.product import Product

T = "acme"


def ctx(store: Any, cache: AggregateCache, if_match: int | None = None) -> CommandContext:
    return CommandContext(T, store, {}, if_match=if_match, cache=cache, optimistic=True)


def record(store: Any, cache: AggregateCache, sid: str = "SES-1", user: str | None = None) -> Any:
    payload: dict[str, Any] = {"type": "page_view", "page_url": "/"}
    if user:
        payload["user_id"] = user
    return execute(ctx(store, cache), "session.record", sid, payload)


def setup_shop(store: Any, cache: AggregateCache, stock: int = 100) -> None:
    execute(ctx(store, cache), "product.register", None,
            {"product_id": "PROD-001", "name": "W", "category": "c", "price": "1", "currency": "USD"})
    if stock:
        execute(ctx(store, cache), "product.restock", "PROD-001", {"quantity": stock})
    execute(ctx(store, cache), "user.register", None, {"user_id": "USR-00001"})


def place(store: Any, cache: AggregateCache, qty: int = 1) -> str:
    return execute(ctx(store, cache), "order.place", None, {
        "user_id": "USR-00001", "currency": "USD",
        "lines": [{"product_id": "PROD-001", "quantity": qty, "unit_price": "1"}],
    }).entity_id


def test_new_session_is_one_append_and_no_load() -> None:
    store, cache = InMemoryEventStore(), AggregateCache()
    res = record(store, cache)
    assert store.load_calls == [] and store.append_calls == 1
    assert (res.stream_version, res.created) == (1, True)
    res = record(store, cache)  # cached now: still no load
    assert store.load_calls == [] and res.stream_version == 2 and not res.created


def test_existing_stream_unknown_to_the_cache_is_reloaded() -> None:
    store = InMemoryEventStore()
    record(store, AggregateCache(), user="USR-1")  # another process
    cache = AggregateCache()
    res = record(store, cache)
    assert res.stream_version == 2 and not res.created
    assert store.types(T, "session", "SES-1") == ["PageViewed", "PageViewed"]
    # the user id came from the reloaded state, not from the assumed-empty session
    assert store.stream(T, "session", "SES-1")[-1].data["user_id"] == "USR-1"
    with pytest.raises(DomainError) as exc:
        record(store, AggregateCache(), user="USR-2")
    assert exc.value.code == "session_user_mismatch"


def test_stale_cache_is_caught_by_the_append() -> None:
    store, cache = InMemoryEventStore(), AggregateCache()
    setup_shop(store, cache, stock=1)
    place(store, AggregateCache(), qty=1)  # elsewhere: the cached product is now stale
    with pytest.raises(DomainError) as exc:
        place(store, cache, qty=1)
    assert exc.value.code == "insufficient_stock"
    _, agg = cache.get((T, "product", "PROD-001")) or (0, None)
    assert isinstance(agg, Product) and agg.reserved == 1


def test_error_from_stale_state_is_rechecked() -> None:
    store, cache = InMemoryEventStore(), AggregateCache()
    setup_shop(store, cache, stock=0)  # cached: nothing in stock
    execute(ctx(store, AggregateCache()), "product.restock", "PROD-001", {"quantity": 5})  # elsewhere
    oid = place(store, cache, qty=2)  # not rejected on the stale cached state
    assert store.types(T, "order", oid) == ["OrderPlaced"]


def test_read_only_stream_is_checked_against_the_store() -> None:
    store, cache = InMemoryEventStore(), AggregateCache()
    setup_shop(store, cache)
    store.load_calls.clear()
    place(store, cache)
    # order (new) and product (written) are checked by the append; the user is only read
    assert [(st, after, n) for st, _, after, n in store.load_calls] == [("user", 1, 0)]


def test_if_match_against_stale_cache_reports_the_stored_version() -> None:
    store, cache = InMemoryEventStore(), AggregateCache()
    setup_shop(store, cache)  # product at version 2, cached
    execute(ctx(store, AggregateCache()), "product.restock", "PROD-001", {"quantity": 1})  # now 3
    res = execute(ctx(store, cache, if_match=3), "product.restock", "PROD-001", {"quantity": 1})
    assert res.stream_version == 4
    with pytest.raises(VersionConflict) as exc:
        execute(ctx(store, cache, if_match=3), "product.restock", "PROD-001", {"quantity": 1})
    assert (exc.value.expected, exc.value.actual) == (3, 4)


def test_cache_ahead_of_a_reset_store_is_evicted() -> None:
    store, cache = InMemoryEventStore(), AggregateCache()
    record(store, cache)
    record(store, cache)
    fresh = InMemoryEventStore()  # the store was reset; the cache still says version 2
    res = record(fresh, cache)
    assert res.stream_version == 1 and fresh.types(T, "session", "SES-1") == ["PageViewed"]

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fakes import InMemoryEventStore

from commands import AggregateCache, CommandContext, CommandResult, execute
from commands.idempotency import IdempotencyClaim, IdempotencyKeyReused
from commands.ports import IdempotencyRecord, IdempotencyReplay

NOW = datetime(2024, 6, 1, 9, 30, tzinfo=UTC)
PRODUCT = {"name": "Lamp", "category": "home", "price": "10", "currency": "USD"}


def run(store: InMemoryEventStore, name: str, payload: dict[str, Any], claim: IdempotencyClaim | None,
        entity_id: str | None = None) -> CommandResult:  # fmt: skip
    ctx = CommandContext("t", store, {}, now=NOW, cache=AggregateCache(), idempotency=claim)
    return execute(ctx, name, entity_id, payload)


def events_of(store: InMemoryEventStore) -> int:
    return sum(len(evs) for evs in store.streams.values())


def test_repeated_key_replays_the_original_answer_without_new_events_or_ids() -> None:
    store = InMemoryEventStore()
    first = run(store, "product.register", PRODUCT, IdempotencyClaim("k1", "h1"))
    assert first.created and not first.replayed
    appended = events_of(store)
    again = run(store, "product.register", PRODUCT, IdempotencyClaim("k1", "h1"))
    assert again.replayed and again.created
    assert (again.entity_id, again.stream_version, again.position) == (
        first.entity_id, first.stream_version, first.position)  # fmt: skip
    assert events_of(store) == appended
    assert run(store, "product.register", PRODUCT, None).entity_id != first.entity_id


def test_same_key_other_request_is_refused() -> None:
    store = InMemoryEventStore()
    run(store, "product.register", PRODUCT, IdempotencyClaim("k1", "h1"))
    with pytest.raises(IdempotencyKeyReused):
        run(store, "product.register", PRODUCT, IdempotencyClaim("k1", "other"))


def test_transition_replay_reports_the_position_of_its_last_event() -> None:
    store = InMemoryEventStore()
    pid = run(store, "product.register", PRODUCT, None).entity_id
    first = run(store, "product.restock", {"quantity": 5}, IdempotencyClaim("k2", "h"), pid)
    run(store, "product.restock", {"quantity": 1}, None, pid)  # later events must not leak into the replay
    again = run(store, "product.restock", {"quantity": 5}, IdempotencyClaim("k2", "h"), pid)
    assert again.replayed and not again.created
    assert (again.stream_version, again.position) == (first.stream_version, first.position)


def test_key_won_by_a_concurrent_request_is_replayed() -> None:
    store = InMemoryEventStore()
    winner = run(store, "product.register", PRODUCT, IdempotencyClaim("k3", "h"))
    stored = store.idempotency[("t", "k3")]

    class LostRace(InMemoryEventStore):
        """The pre-check misses the key; the append then finds it (the other request committed)."""

        def get_idempotency(self, tenant_id: str, key: str) -> IdempotencyRecord | None:
            return None

        def append(self, *args: Any, **kwargs: Any) -> Any:
            raise IdempotencyReplay(stored)

    racer = LostRace()
    racer.streams, racer.counters = store.streams, store.counters
    result = run(racer, "product.register", PRODUCT, IdempotencyClaim("k3", "h"))
    assert result.replayed and result.position == winner.position

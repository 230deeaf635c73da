"""The event-store port (commands/ports.py ``EventStorePort``): what the command side may rely on.

Run over the in-memory fake (tests/unit/test_event_store_contract.py) and PostgresEventStore
(tests/integration/test_event_store_contract.py). A subclass provides ``store``: an empty store.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from commands.ports import (
    DuplicateEventId,
    EventStorePort,
    IdempotencyRecord,
    IdempotencyReplay,
    StreamWrite,
    VersionConflict,
)
from domain.events import EVENT_TYPES, NewEvent

T, U = "tenant-a", "tenant-b"


def ev(stream_id: str, n: int, stream_type: str = "order", event_type: str = "OrderConfirmed",
       event_id: str | None = None) -> NewEvent:
    return NewEvent(stream_type, stream_id, event_type, {"order_id": stream_id, "n": n}, event_id=event_id)


def write(stream_id: str, expected: int, count: int = 1, stream_type: str = "order") -> StreamWrite:
    return StreamWrite(stream_type, stream_id, expected,
                       [ev(stream_id, expected + i + 1, stream_type) for i in range(count)])


def record(key: str = "k-1", request_hash: str = "h-1") -> IdempotencyRecord:
    return IdempotencyRecord(key, request_hash, 201, {"order_id": "ORD-1", "stream_version": 1})


class EventStoreContract:
    @pytest.fixture()
    def store(self) -> EventStorePort:
        raise NotImplementedError("a concrete suite provides an empty store")

    # -- append and load ---------------------------------------------------------------------------
    def test_a_stream_reads_back_in_version_order_with_data_metadata_and_ids(self, store: Any) -> None:
        meta = {"correlation_id": "c-1", "actor": "tester", "command_id": "cmd-1"}
        given = str(uuid.uuid4())
        res = store.append(T, [StreamWrite("order", "ORD-1", 0, [ev("ORD-1", 1, event_id=given),
                                                                  ev("ORD-1", 2), ev("ORD-1", 3)])], meta)
        assert res.stream_versions == {("order", "ORD-1"): 3}
        events = store.load_stream(T, "order", "ORD-1")
        assert [e.stream_version for e in events] == [1, 2, 3]
        assert [e.data for e in events] == [{"order_id": "ORD-1", "n": n} for n in (1, 2, 3)]
        assert [e.position for e in events] == res.positions
        assert all(e.metadata == meta and e.tenant_id == T for e in events)
        assert {e.event_type for e in events} == {"OrderConfirmed"}
        assert events[0].event_id == given and len({e.event_id for e in events}) == 3
        assert events[0].occurred_at.tzinfo is not None
        assert [e.stream_version for e in store.load_stream(T, "order", "ORD-1", after_version=1)] == [2, 3]
        assert store.load_stream(T, "order", "ORD-1", after_version=3) == []
        assert store.load_stream(T, "order", "ORD-none") == []

    def test_positions_are_global_increasing_and_in_write_order(self, store: Any) -> None:
        first = store.append(T, [write("ORD-1", 0, 2), write("ORD-2", 0, 1)], {})
        other = store.append(U, [write("ORD-1", 0, 1)], {})
        later = store.append(T, [write("ORD-1", 2, 1)], {})
        assert first.positions == sorted(first.positions) and len(set(first.positions)) == 3
        assert first.last_position == first.positions[-1]
        assert max(first.positions) < other.positions[0] < later.positions[0]
        one = store.load_stream(T, "order", "ORD-1")
        two = store.load_stream(T, "order", "ORD-2")
        assert [e.position for e in one[:2]] < [two[0].position]  # the order of the writes
        assert first.stream_versions == {("order", "ORD-1"): 2, ("order", "ORD-2"): 1}

    def test_tenants_never_see_each_others_streams(self, store: Any) -> None:
        store.append(T, [write("ORD-1", 0, 2)], {})
        assert store.load_stream(U, "order", "ORD-1") == []
        store.append(U, [write("ORD-1", 0)], {})  # the same stream id is a new stream for another tenant
        assert len(store.load_stream(T, "order", "ORD-1")) == 2
        assert [e.tenant_id for e in store.load_stream(U, "order", "ORD-1")] == [U]

    def test_old_schema_versions_are_upcast_on_load(self, store: Any) -> None:
        v1 = {"order_id": "ORD-9", "user_id": "USR-00001", "currency": "USD",
              "lines": [{"product_id": "PROD-001", "quantity": 2, "unit_price": "12.50"}]}
        store.append(T, [StreamWrite("order", "ORD-9", 0, [NewEvent("order", "ORD-9", "OrderPlaced", v1,
                                                                      schema_version=1)])], {})
        (e,) = store.load_stream(T, "order", "ORD-9")
        assert e.schema_version == EVENT_TYPES["OrderPlaced"][1] == 2
        assert e.data["lines"] == [{"product_id": "PROD-001", "quantity": 2, "unit_price_minor": 1250}]
        assert e.data["total_minor"] == 2500

    # -- optimistic concurrency --------------------------------------------------------------------
    def test_an_append_at_the_wrong_version_is_a_conflict_and_writes_nothing(self, store: Any) -> None:
        store.append(T, [write("ORD-1", 0, 2)], {})
        for expected in (0, 1, 3):
            with pytest.raises(VersionConflict) as info:
                store.append(T, [write("ORD-1", expected)], {})
            assert (info.value.stream_type, info.value.stream_id) == ("order", "ORD-1")
            assert (info.value.expected, info.value.actual) == (expected, 2)
        assert len(store.load_stream(T, "order", "ORD-1")) == 2

    def test_a_multi_stream_append_is_all_or_nothing(self, store: Any) -> None:
        store.append(T, [write("PROD-1", 0, 1, "product")], {})
        with pytest.raises(VersionConflict) as info:
            store.append(T, [write("ORD-1", 0), write("PROD-1", 0, 1, "product")], {})
        assert info.value.stream_id == "PROD-1"
        assert store.load_stream(T, "order", "ORD-1") == []
        res = store.append(T, [write("ORD-1", 0), write("PROD-1", 1, 1, "product")], {})
        assert res.stream_versions == {("order", "ORD-1"): 1, ("product", "PROD-1"): 2}

    def test_invalid_writes_are_refused_before_anything_is_written(self, store: Any) -> None:
        bad = [
            [write("ORD-1", 0), write("ORD-1", 0)],  # a stream twice
            [StreamWrite("order", "ORD-1", -1, [ev("ORD-1", 1)])],  # negative expected version
            [StreamWrite("order", "ORD-1", 0, [ev("ORD-2", 1)])],  # an event of another stream
        ]
        for writes in bad:
            with pytest.raises(ValueError):
                store.append(T, writes, {})
        assert store.load_stream(T, "order", "ORD-1") == [] and store.load_stream(T, "order", "ORD-2") == []

    def test_an_event_id_is_stored_once(self, store: Any) -> None:
        taken = str(uuid.uuid4())
        store.append(T, [StreamWrite("order", "ORD-1", 0, [ev("ORD-1", 1, event_id=taken)])], {})
        with pytest.raises(DuplicateEventId):
            store.append(T, [StreamWrite("order", "ORD-2", 0, [ev("ORD-2", 1, event_id=taken)])], {})
        assert store.load_stream(T, "order", "ORD-2") == []

    # -- idempotency -------------------------------------------------------------------------------
    def test_an_idempotency_record_commits_with_the_events_and_replays(self, store: Any) -> None:
        assert store.get_idempotency(T, "k-1") is None
        store.append(T, [write("ORD-1", 0)], {}, record())
        assert store.get_idempotency(T, "k-1") == record()
        assert store.get_idempotency(U, "k-1") is None  # keys are per tenant
        with pytest.raises(IdempotencyReplay) as info:
            store.append(T, [write("ORD-1", 1)], {}, record(request_hash="h-2"))
        assert info.value.record == record()
        assert len(store.load_stream(T, "order", "ORD-1")) == 1

    def test_a_used_key_wins_over_a_version_conflict(self, store: Any) -> None:
        store.append(T, [write("ORD-1", 0)], {}, record())
        with pytest.raises(IdempotencyReplay):
            store.append(T, [write("ORD-1", 0)], {}, record())

    def test_a_conflicting_append_stores_no_idempotency_record(self, store: Any) -> None:
        store.append(T, [write("ORD-1", 0)], {})
        with pytest.raises(VersionConflict):
            store.append(T, [write("ORD-1", 0)], {}, record())
        assert store.get_idempotency(T, "k-1") is None

    # -- the rest of the port ----------------------------------------------------------------------
    def test_rejections_are_remembered_without_touching_the_streams(self, store: Any) -> None:
        store.append(T, [write("ORD-1", 0)], {})
        store.record_rejection(T, "order.place", "validation_failed", {"errors": [{"field": "lines"}]})
        assert len(store.load_stream(T, "order", "ORD-1")) == 1
        assert store.append(T, [write("ORD-1", 1)], {}).stream_versions == {("order", "ORD-1"): 2}

    def test_next_id_counts_per_kind_and_knows_only_its_kinds(self, store: Any) -> None:
        assert [store.next_id("order") for _ in range(3)] == [1, 2, 3]
        assert store.next_id("payment") == 1
        assert store.next_id("product") == 1 and store.next_id("user") == 1
        with pytest.raises(ValueError):
            store.next_id("invoice")

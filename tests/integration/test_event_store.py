from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine
from waiting import eventually

from commands.ports import IdempotencyRecord, IdempotencyReplay, StreamWrite, VersionConflict
from connectors.database import connect_raw
from connectors.event_store import PostgresEventStore
from domain.events import NewEvent

pytestmark = pytest.mark.integration

T = "tenant-a"
HANG_S = 60.0  # bounds a hang; a correct run never waits that long


def ev(stream_id: str, n: int, stream_type: str = "order", event_type: str = "OrderConfirmed") -> NewEvent:
    return NewEvent(stream_type, stream_id, event_type, {"order_id": stream_id, "n": n})


def write(stream_id: str, expected: int, count: int = 1, stream_type: str = "order") -> StreamWrite:
    return StreamWrite(stream_type, stream_id, expected, [ev(stream_id, expected + i + 1, stream_type)
                                                           for i in range(count)])


@pytest.fixture()
def store(engine: Engine) -> PostgresEventStore:
    return PostgresEventStore(engine)


def test_append_load_round_trip(store: PostgresEventStore) -> None:
    meta = {"correlation_id": "c-1", "actor": "tester", "command_id": "cmd-1"}
    res = store.append(T, [write("ORD-1", 0, 3)], meta)
    assert res.positions == [1, 2, 3]
    assert res.last_position == 3
    assert res.stream_versions == {("order", "ORD-1"): 3}

    events = store.load_stream(T, "order", "ORD-1")
    assert [e.stream_version for e in events] == [1, 2, 3]
    assert [e.position for e in events] == [1, 2, 3]
    assert [e.data["n"] for e in events] == [1, 2, 3]
    e = events[0]
    assert e.tenant_id == T and e.stream_type == "order" and e.event_type == "OrderConfirmed"
    assert e.metadata == meta
    assert len({x.event_id for x in events}) == 3
    assert len({x.transaction_id for x in events}) == 1 and e.transaction_id > 0
    assert e.occurred_at.tzinfo is not None and e.recorded_at >= e.occurred_at

    res2 = store.append(T, [write("ORD-1", 3, 2)], {})
    assert res2.stream_versions == {("order", "ORD-1"): 5}
    assert [x.stream_version for x in store.load_stream(T, "order", "ORD-1", after_version=3)] == [4, 5]
    # tenants are isolated
    assert store.load_stream("tenant-b", "order", "ORD-1") == []
    store.append("tenant-b", [write("ORD-1", 0)], {})
    assert len(store.load_stream(T, "order", "ORD-1")) == 5


def test_upcast_on_load(store: PostgresEventStore) -> None:
    v1 = NewEvent("order", "ORD-20260101-0001", "OrderPlaced", {
        "order_id": "ORD-20260101-0001", "user_id": "USR-00001", "currency": "EUR",
        "lines": [{"product_id": "PROD-001", "quantity": 2, "unit_price": "12.50"}],
    }, schema_version=1)
    store.append(T, [StreamWrite("order", "ORD-20260101-0001", 0, [v1])], {})
    (loaded,) = store.load_stream(T, "order", "ORD-20260101-0001")
    assert loaded.schema_version == 2
    assert loaded.data["lines"] == [{"product_id": "PROD-001", "quantity": 2, "unit_price_minor": 1250}]
    assert loaded.data["total_minor"] == 2500
    (raw,) = store.read_all()
    assert raw.schema_version == 2  # every read path upcasts


def test_expected_version_conflict(store: PostgresEventStore) -> None:
    store.append(T, [write("ORD-1", 0, 2)], {})
    with pytest.raises(VersionConflict) as info:
        store.append(T, [write("ORD-1", 1)], {})
    assert (info.value.stream_type, info.value.stream_id, info.value.expected, info.value.actual) == (
        "order", "ORD-1", 1, 2)
    with pytest.raises(VersionConflict) as ahead:  # expected ahead of the stream: no gaps allowed
        store.append(T, [write("ORD-1", 5)], {})
    assert ahead.value.actual == 2
    with pytest.raises(VersionConflict):
        store.append(T, [write("ORD-NEW", 1)], {})
    assert len(store.load_stream(T, "order", "ORD-1")) == 2
    assert store.head_position() == 2


def test_race_on_unique_index_is_a_version_conflict(engine: Engine, store: PostgresEventStore) -> None:
    """The loser passed the version check (winner not committed yet) and fails on the unique index."""
    taken = threading.Event()
    release = threading.Event()
    winner_pid: list[int] = []
    outcome: list[BaseException | None] = []

    def winner() -> None:
        with engine.begin() as conn:
            winner_pid.append(int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()))
            store.append_on(conn, T, [write("ORD-R", 0)], {})
            taken.set()
            assert release.wait(HANG_S)  # commits only once the loser is blocked on it

    def loser() -> None:
        try:
            store.append(T, [write("ORD-R", 0)], {})
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    w = threading.Thread(target=winner)
    w.start()
    lo = threading.Thread(target=loser)
    try:
        assert taken.wait(HANG_S)
        lo.start()

        def loser_blocked_on_winner() -> bool:
            with engine.connect() as conn:
                return bool(
                    conn.exec_driver_sql(
                        "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                        (winner_pid[0],),
                    ).scalar_one()
                )

        # the loser passed the version check and waits on the index entry of the open transaction
        eventually(loser_blocked_on_winner, what="the loser waiting on the winner's transaction")
    finally:
        release.set()
        w.join(HANG_S)
        if lo.ident is not None:
            lo.join(HANG_S)
    assert not w.is_alive() and not lo.is_alive()
    (err,) = outcome
    assert isinstance(err, VersionConflict)
    assert (err.expected, err.actual) == (0, 1)
    assert [e.stream_version for e in store.load_stream(T, "order", "ORD-R")] == [1]


def test_concurrent_appends_exactly_one_wins(store: PostgresEventStore) -> None:
    for round_ in range(15):
        sid = f"ORD-RACE-{round_}"
        barrier = threading.Barrier(4)
        outcomes: list[str] = []

        def attempt(
            sid: str = sid, barrier: threading.Barrier = barrier, outcomes: list[str] = outcomes
        ) -> None:
            barrier.wait()
            try:
                store.append(T, [write(sid, 0, 2)], {})
                result = "ok"
            except VersionConflict:
                result = "conflict"
            outcomes.append(result)  # list.append is atomic

        threads = [threading.Thread(target=attempt) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes) == ["conflict", "conflict", "conflict", "ok"]
        assert [e.stream_version for e in store.load_stream(T, "order", sid)] == [1, 2]


def test_idempotency_round_trip(store: PostgresEventStore) -> None:
    rec = IdempotencyRecord("key-1", "hash-1", 201, {"order_id": "ORD-1", "position": 1})
    res = store.append(T, [write("ORD-1", 0)], {"idempotency_key": "key-1"}, rec)
    assert res.positions == [1]
    assert store.get_idempotency(T, "key-1") == rec
    assert store.get_idempotency("tenant-b", "key-1") is None
    assert store.get_idempotency(T, "missing") is None

    with pytest.raises(IdempotencyReplay) as info:  # the retried request: version moved, key wins
        store.append(T, [write("ORD-1", 0)], {}, IdempotencyRecord("key-1", "hash-1", 201, {}))
    assert info.value.record == rec
    with pytest.raises(IdempotencyReplay):
        store.append(T, [write("ORD-2", 0)], {}, IdempotencyRecord("key-1", "other", 201, {}))
    assert store.head_position() == 1
    assert store.load_stream(T, "order", "ORD-2") == []
    # same key in another tenant is independent
    store.append("tenant-b", [write("ORD-1", 0)], {}, rec)


def test_conflict_stores_no_idempotency_key(store: PostgresEventStore) -> None:
    store.append(T, [write("ORD-1", 0)], {})
    with pytest.raises(VersionConflict):
        store.append(T, [write("ORD-1", 0)], {}, IdempotencyRecord("key-x", "h", 201, {}))
    assert store.get_idempotency(T, "key-x") is None


def test_concurrent_same_idempotency_key(store: PostgresEventStore) -> None:
    barrier = threading.Barrier(2)
    results: list[Any] = []

    def attempt(i: int) -> None:
        barrier.wait()
        try:
            rec = IdempotencyRecord("k", "h", 201, {"i": i})
            results.append(store.append(T, [write(f"ORD-{i}", 0)], {}, rec))
        except IdempotencyReplay as e:
            results.append(e)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(isinstance(r, IdempotencyReplay) for r in results) == 1
    assert store.head_position() == 1


def test_multi_stream_append_is_atomic(store: PostgresEventStore) -> None:
    store.append(T, [write("PROD-001", 0, stream_type="product")], {})
    with pytest.raises(VersionConflict) as info:
        store.append(T, [write("ORD-1", 0, 2), write("PROD-001", 3, stream_type="product")], {})
    assert (info.value.stream_type, info.value.stream_id, info.value.actual) == ("product", "PROD-001", 1)
    assert store.load_stream(T, "order", "ORD-1") == []
    assert store.head_position() == 1

    res = store.append(T, [write("ORD-1", 0, 2), write("PROD-001", 1, stream_type="product")], {})
    assert res.positions == [2, 3, 4]  # in the order given
    assert res.stream_versions == {("order", "ORD-1"): 2, ("product", "PROD-001"): 2}
    assert [e.stream_type for e in store.read_all()] == ["product", "order", "order", "product"]


def test_invalid_writes_are_rejected_before_sql(store: PostgresEventStore) -> None:
    with pytest.raises(ValueError):
        store.append(T, [write("ORD-1", 0), write("ORD-1", 1)], {})
    with pytest.raises(ValueError):
        store.append(T, [StreamWrite("order", "ORD-1", 0, [ev("ORD-2", 1)])], {})
    assert store.head_position() == 0


def test_next_id(store: PostgresEventStore) -> None:
    assert [store.next_id("order") for _ in range(3)] == [1, 2, 3]
    assert store.next_id("payment") == 1
    assert store.next_id("product") == 1
    assert store.next_id("user") == 1
    with pytest.raises(ValueError):
        store.next_id("order; DROP TABLE events")


def test_record_rejection(engine: Engine, store: PostgresEventStore) -> None:
    store.record_rejection(T, "place_order", "insufficient_stock", {"product_id": "PROD-001"})
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT tenant_id, command, code, detail FROM command_rejections").all()
    assert [tuple(r) for r in rows] == [(T, "place_order", "insufficient_stock", {"product_id": "PROD-001"})]
    assert store.head_position() == 0


def test_read_all_and_time_travel(store: PostgresEventStore) -> None:
    store.append(T, [write("ORD-1", 0, 2)], {})
    # occurred_at is the appending transaction's start (the database clock): the first two events
    # share it, and the later appends must start after it
    middle = store.load_stream(T, "order", "ORD-1")[-1].occurred_at

    def db_clock_past_middle() -> bool:
        with store.engine.connect() as conn:
            return bool(conn.exec_driver_sql("SELECT clock_timestamp() > %s", (middle,)).scalar_one())

    eventually(db_clock_past_middle, what="the database clock passing the first append")
    store.append("tenant-b", [write("ORD-9", 0)], {})
    store.append(T, [write("ORD-1", 2)], {})
    assert [e.position for e in store.read_all()] == [1, 2, 3, 4]
    assert [e.position for e in store.read_all(after_position=1, limit=2)] == [2, 3]
    assert [e.position for e in store.read_all(tenant_id=T)] == [1, 2, 4]
    assert [e.position for e in store.read_all(until=middle)] == [1, 2]
    assert [e.position for e in store.read_all(max_position=3)] == [1, 2, 3]
    assert [e.stream_version for e in store.read_stream_until(T, "order", "ORD-1", middle)] == [1, 2]
    later = max(e.occurred_at for e in store.read_all())
    assert [e.stream_version for e in store.read_stream_until(T, "order", "ORD-1", later)] == [1, 2, 3]
    assert store.head_position() == 4
    assert store.stream_version(T, "order", "ORD-1") == 3


def test_events_are_append_only(engine: Engine, store: PostgresEventStore) -> None:
    store.append(T, [write("ORD-1", 0)], {})
    with pytest.raises(sa_exc.DBAPIError), engine.begin() as conn:
        conn.exec_driver_sql("UPDATE events SET data = '{}'")
    with pytest.raises(sa_exc.DBAPIError), engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM events")
    assert store.head_position() == 1


def test_append_notifies_last_position(pg_url: str, store: PostgresEventStore) -> None:
    with connect_raw(pg_url) as listener:
        listener.execute("LISTEN agentflow_events")
        res = store.append(T, [write("ORD-1", 0, 3)], {})
        payloads = [n.payload for n in listener.notifies(timeout=HANG_S, stop_after=1)]
    assert payloads == [str(res.last_position)]


def test_append_on_callers_transaction(engine: Engine, store: PostgresEventStore) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), engine.begin() as conn:
        store.append_on(conn, T, [write("ORD-1", 0)], {})
        raise Boom
    assert store.head_position() == 0
    with engine.begin() as conn:
        res = store.append_on(conn, T, [write("ORD-1", 0)], {})
    assert store.load_stream(T, "order", "ORD-1")[0].position == res.last_position


def test_cluster_restart_and_kill9_recovery(tmp_path_factory: pytest.TempPathFactory) -> None:
    """An owned cluster keeps acknowledged events across a clean stop and across kill -9."""
    import os
    import signal

    from connectors.database import make_engine
    from connectors.postgres_cluster import PostgresCluster
    from migrations import run_migrations

    data = tmp_path_factory.mktemp("own-cluster") / "pg"
    cluster = PostgresCluster(data, settings={"shared_buffers": "32MB"})
    try:
        url = cluster.start()
        assert cluster.start() == url and cluster.is_running()  # idempotent
        run_migrations(url)
        eng = make_engine(url, pool_size=1)
        PostgresEventStore(eng).append(T, [write("ORD-1", 0)], {})
        eng.dispose()
        cluster.stop()
        assert not cluster.is_running()

        url = cluster.start()
        pid = int((data / "pgdata" / "postmaster.pid").read_text().split()[0])
        eng = make_engine(url, pool_size=1)
        PostgresEventStore(eng).append(T, [write("ORD-1", 1)], {})
        eng.dispose()
        os.kill(pid, signal.SIGKILL)
        eventually(lambda: not cluster.is_running(), what="the killed postmaster gone")
        assert (data / "pgdata" / "postmaster.pid").exists()  # stale

        url = PostgresCluster(data).start()  # a new owner recovers the data dir
        run_migrations(url)  # already at head: no-op
        eng = make_engine(url, pool_size=1)
        assert [e.stream_version for e in PostgresEventStore(eng).load_stream(T, "order", "ORD-1")] == [1, 2]
        eng.dispose()
    finally:
        cluster.stop()

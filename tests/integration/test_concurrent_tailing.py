"""Concurrent writers (some in slow transactions that take positions early and commit late, some that
roll back) while a tailer polls: the tailer must yield every committed position exactly once, its
watermark must be monotonic, and everything <= a reported watermark must already have been yielded.
A naive ``position > last`` reader in the same scenario skips events, so the test has teeth."""

from __future__ import annotations

import random
import threading

import pytest
from sqlalchemy.engine import Engine

from commands.ports import StreamWrite, VersionConflict
from connectors.event_store import PostgresEventStore
from connectors.tailer import PostgresTailer, TailCursor
from domain.events import NewEvent

pytestmark = pytest.mark.integration

T = "tenant-c"
WRITERS = 8
APPENDS_PER_WRITER = 30
HANG_S = 120.0  # bounds a hang; a correct run never waits that long


class Rollback(Exception):
    pass


def write(stream_id: str, expected: int, count: int) -> StreamWrite:
    return StreamWrite("order", stream_id, expected, [
        NewEvent("order", stream_id, "OrderConfirmed", {"order_id": stream_id, "v": expected + i + 1})
        for i in range(count)
    ])


class NaiveReader:
    """The broken design: remember the highest position seen, read ``position > last``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.last = 0
        self.seen: list[int] = []

    def poll(self) -> None:
        with self.engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT position FROM events WHERE position > %(p)s ORDER BY position", {"p": self.last}
            ).all()
        for (p,) in rows:
            self.seen.append(p)
            self.last = p


def test_tailer_never_skips_under_concurrent_out_of_order_commits(engine: Engine) -> None:
    store = PostgresEventStore(engine)
    committed: set[int] = set()
    rolled_back: set[int] = set()
    slow_committed: set[int] = set()  # committed after a later position had committed and been polled
    lock = threading.Lock()
    writers_done = threading.Event()
    errors: list[BaseException] = []
    # completed tailer turns (fetch + naive poll): writers interleave with the readers on this signal
    polled = threading.Condition()
    polls = [0]

    def readers_polled(turns: int) -> None:
        """Return once ``turns`` whole reader turns have started (and finished) after this call."""
        with polled:
            target = polls[0] + turns + 1  # the turn under way may have started before the call
            assert polled.wait_for(lambda: polls[0] >= target, HANG_S), "the tailer stopped polling"

    def writer(w: int) -> None:
        rng = random.Random(w)
        sid, side = f"ORD-W{w}", f"ORD-W{w}-SIDE"
        version = side_version = 0
        try:
            for _ in range(APPENDS_PER_WRITER):
                n = rng.randint(1, 3)
                roll = rng.random()
                if roll < 0.25:  # slow: take positions now, commit (or roll back) after later commits
                    rollback = rng.random() < 0.3
                    positions: list[int] = []
                    try:
                        with engine.begin() as conn:
                            positions = store.append_on(conn, T, [write(sid, version, n)], {}).positions
                            # a later position commits while these are in flight, and the readers
                            # poll in between: this commit lands below what they have already seen
                            res = store.append(T, [write(side, side_version, 1)], {"w": w})
                            side_version += 1
                            with lock:
                                committed.update(res.positions)
                            assert min(res.positions) > max(positions)
                            readers_polled(rng.randint(1, 2))
                            if rollback:
                                raise Rollback
                    except Rollback:
                        with lock:
                            rolled_back.update(positions)
                        continue
                    with lock:
                        committed.update(positions)
                        slow_committed.update(positions)
                    version += n
                else:
                    res = store.append(T, [write(sid, version, n)], {"w": w})
                    with lock:
                        committed.update(res.positions)
                    version += n
                    if rng.random() < 0.3:
                        readers_polled(1)  # let the readers see this state
            # a little contention on a shared stream too: conflicts consume no committed positions
            for _ in range(5):
                shared = f"ORD-SHARED-{rng.randint(0, 1)}"
                try:
                    cur = store.stream_version(T, "order", shared)
                    res = store.append(T, [write(shared, cur, 1)], {})
                    with lock:
                        committed.update(res.positions)
                except VersionConflict:
                    pass
        except BaseException as e:  # pragma: no cover - surfaced below
            errors.append(e)

    yielded: list[int] = []
    # (watermark reported, number of positions yielded when it was reported)
    reports: list[tuple[int, int]] = []
    naive = NaiveReader(engine)

    def tail() -> None:
        rng = random.Random(99)
        cursor: TailCursor | None = None
        with PostgresTailer(engine) as tailer:
            while True:
                batch = tailer.fetch(cursor, rng.choice([1, 5, 20, 200]))
                yielded.extend(e.position for e in batch.events)
                cursor = batch.cursor
                reports.append((batch.watermark, len(yielded)))
                naive.poll()
                with polled:
                    polls[0] += 1
                    polled.notify_all()
                if batch.caught_up:
                    if writers_done.is_set():
                        final = tailer.fetch(cursor, 1000)
                        yielded.extend(e.position for e in final.events)
                        reports.append((final.watermark, len(yielded)))
                        if not final.events and final.caught_up:
                            return
                        cursor = final.cursor
                        continue
                    tailer.wait(0.02)  # woken by NOTIFY; the timeout only paces idle polls

    tailer_thread = threading.Thread(target=tail)
    tailer_thread.start()
    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    try:
        for t in threads:
            t.start()
    finally:
        for t in threads:
            if t.ident is not None:
                t.join(timeout=HANG_S)
        writers_done.set()
        tailer_thread.join(timeout=HANG_S)
    assert not any(t.is_alive() for t in threads)
    assert not tailer_thread.is_alive()
    assert not errors, errors

    assert committed and rolled_back, "scenario must include commits and rollbacks"
    assert len(yielded) == len(set(yielded)), "a position was yielded twice"
    assert set(yielded) == committed, (
        f"missing {sorted(committed - set(yielded))[:10]}, unexpected {sorted(set(yielded) - committed)[:10]}"
    )
    assert not set(yielded) & rolled_back

    watermarks = [w for w, _ in reports]
    assert watermarks == sorted(watermarks), "watermark went backwards"
    for watermark, count in reports:
        seen = set(yielded[:count])
        missing = [p for p in committed if p <= watermark and p not in seen]
        assert not missing, f"watermark {watermark} reported before {sorted(missing)[:10]} were yielded"
    assert watermarks[-1] >= max(committed)

    # the same scenario defeats the naive reader: every committed slow transaction landed below its
    # high-water mark (a later position had committed and been polled first), so it skipped them all
    naive.poll()
    assert slow_committed, "no slow transaction committed: the scenario is not out of order"
    skipped = committed - set(naive.seen)
    assert slow_committed <= skipped, f"naive reader saw {sorted(slow_committed - skipped)[:10]}"


def test_naive_reader_skips_a_slow_commit_the_tailer_does_not(engine: Engine) -> None:
    store = PostgresEventStore(engine)
    naive = NaiveReader(engine)
    with PostgresTailer(engine) as tailer, engine.connect() as slow:
        slow.begin()
        early = store.append_on(slow, T, [write("ORD-SLOW", 0, 1)], {}).last_position
        late = store.append(T, [write("ORD-FAST", 0, 1)], {}).last_position
        assert early < late
        naive.poll()
        batch = tailer.fetch(None, 100)
        slow.commit()
        naive.poll()
        batch2 = tailer.fetch(batch.cursor, 100)
    assert naive.seen == [late]  # `early` committed below its high-water mark: skipped forever
    assert [e.position for e in batch.events + batch2.events] == [early, late]
    assert batch2.watermark == late

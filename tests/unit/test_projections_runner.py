from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from waiting import eventually

from domain.events import RecordedEvent
from projections.runner import ProjectionRunner, rebuild

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def ev(pos: int) -> RecordedEvent:
    return RecordedEvent(
        position=pos,
        tenant_id="t",
        stream_type="user",
        stream_id=f"U{pos}",
        stream_version=1,
        event_id=f"e{pos}",
        event_type="UserRegistered",
        schema_version=1,
        data={"user_id": f"U{pos}", "name": "", "email": "", "region": ""},
        occurred_at=T0,
        recorded_at=T0,
        transaction_id=pos,
    )


@dataclass
class Batch:
    events: list[RecordedEvent]
    cursor: int
    watermark: int
    caught_up: bool


class FakeTailer:
    def __init__(self, events: list[RecordedEvent], fail_times: int = 0) -> None:
        self.events = events
        self.fail_times = fail_times
        self.fetches: list[tuple[Any, int]] = []
        self.waits = 0
        # the runner's stop event: no news ever arrives, so a wait ends when the test stops the
        # runner (or after the runner's own timeout)
        self.stop = threading.Event()

    def fetch(self, cursor: Any, limit: int) -> Batch:
        self.fetches.append((cursor, limit))
        if self.fail_times:
            self.fail_times -= 1
            raise ConnectionError("db down")
        after = cursor or 0
        batch = [e for e in self.events if e.position > after][:limit]
        last = batch[-1].position if batch else after
        top = self.events[-1].position if self.events else 0
        return Batch(batch, last, last, last >= top)

    def wait(self, timeout: float) -> bool:
        self.waits += 1
        return self.stop.wait(timeout)


class FakeSink:
    name = "fake"

    def __init__(self, checkpoint: tuple[Any, int] = (None, 0), fail_times: int = 0) -> None:
        self.checkpoint = checkpoint
        self.applied: list[int] = []
        self.fail_times = fail_times
        self.ticks = 0
        self.flushes = 0

    def load_checkpoint(self) -> tuple[Any, int]:
        return self.checkpoint

    def apply(self, events: Sequence[RecordedEvent], cursor: Any, watermark: int) -> None:
        if self.fail_times:
            self.fail_times -= 1
            raise RuntimeError("sink down")
        self.applied.extend(e.position for e in events)
        if cursor is not None:
            self.checkpoint = (cursor, watermark)

    def tick(self) -> None:
        self.ticks += 1

    def flush(self) -> None:
        self.flushes += 1


def run_until(runner: ProjectionRunner, tailer: FakeTailer, cond: Any) -> None:
    t = threading.Thread(target=runner.run, args=(tailer.stop,))
    t.start()
    try:
        eventually(cond, what=lambda: f"runner status {runner.status}")
    finally:
        tailer.stop.set()
        t.join(60)
    assert cond()
    assert not t.is_alive()


def test_runner_applies_in_batches_and_checkpoints() -> None:
    events = [ev(i) for i in range(1, 26)]
    sink = FakeSink()
    tailer = FakeTailer(events)
    seen: list[tuple[int, int]] = []
    runner = ProjectionRunner(
        "fake",
        tailer,
        sink,
        batch_size=10,
        on_applied=lambda evs, wm: seen.append((len(evs), wm)),
        start_cursor=0,
    )
    run_until(runner, tailer, lambda: runner.status.caught_up and runner.status.applied == 25)
    assert sink.applied == list(range(1, 26))
    assert seen == [(10, 10), (10, 20), (5, 25)]
    st = runner.status
    assert (st.watermark, st.applied, st.last_position, st.last_batch_size) == (25, 25, 25, 5)
    assert st.last_recorded_at == T0 and st.last_poll_at is not None and st.last_error is None
    assert sink.checkpoint == (25, 25)
    assert runner.wait_for(25, 0.01) and not runner.wait_for(26, 0.01)


def test_runner_resumes_from_checkpoint() -> None:
    events = [ev(i) for i in range(1, 11)]
    sink = FakeSink(checkpoint=(7, 7))
    tailer = FakeTailer(events)
    runner = ProjectionRunner("fake", tailer, sink, start_cursor=0)
    run_until(runner, tailer, lambda: runner.status.applied == 3)
    assert sink.applied == [8, 9, 10]
    assert tailer.fetches[0][0] == 7


def test_runner_retries_without_skipping() -> None:
    events = [ev(i) for i in range(1, 6)]
    tailer = FakeTailer(events, fail_times=2)
    sink = FakeSink(fail_times=2)
    runner = ProjectionRunner("fake", tailer, sink, batch_size=2, start_cursor=0, max_backoff=0.05)
    run_until(runner, tailer, lambda: runner.status.applied == 5)
    assert sink.applied == [1, 2, 3, 4, 5]
    assert runner.status.last_error is not None and "sink down" in runner.status.last_error


def test_rebuild_replays_without_checkpoint() -> None:
    sink = FakeSink()
    assert rebuild((ev(i) for i in range(1, 8)), sink, batch_size=3) == 7
    assert sink.applied == list(range(1, 8))
    assert sink.checkpoint == (None, 0) and sink.flushes == 1


def test_wait_for_wakes_up_on_progress() -> None:
    events = [ev(i) for i in range(1, 4)]
    tailer = FakeTailer(events)
    runner = ProjectionRunner("fake", tailer, FakeSink(), start_cursor=0)
    t = threading.Thread(target=runner.run, args=(tailer.stop,))
    t.start()
    try:
        assert runner.wait_for(3, 60.0)  # the deadline bounds a hang: progress notifies the waiter
    finally:
        tailer.stop.set()
        t.join(60)
    assert not t.is_alive()

"""Embedded projection runner: tail the event store in commit order and feed a sink.

Pure: the tailer and the sink are ports (Protocols); connectors/readmodels provide them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from domain.events import RecordedEvent

log = logging.getLogger(__name__)


class Batch(Protocol):
    @property
    def events(self) -> Sequence[RecordedEvent]: ...
    @property
    def cursor(self) -> Any: ...
    @property
    def watermark(self) -> int: ...
    @property
    def caught_up(self) -> bool: ...


class Tailer(Protocol):
    def fetch(self, cursor: Any, limit: int) -> Batch: ...
    def wait(self, timeout: float) -> object: ...


class Sink(Protocol):
    name: str

    def load_checkpoint(self) -> tuple[Any | None, int]:
        """(cursor or None when never run, watermark)."""
        ...

    def apply(self, events: Sequence[RecordedEvent], cursor: Any | None, watermark: int) -> None:
        """Write the batch's rows, then save (cursor, watermark); cursor None = don't checkpoint."""
        ...

    def tick(self) -> None:
        """Called every loop turn (time-based flushes); cheap when there is nothing to do."""
        ...

    def flush(self) -> None:
        """Make everything applied so far durable (buffering sinks)."""
        ...


OnApplied = Callable[[Sequence[RecordedEvent], int], None]


@dataclass(frozen=True, slots=True)
class RunnerStatus:
    name: str
    running: bool = False
    watermark: int = 0
    applied: int = 0
    last_position: int = 0
    last_recorded_at: datetime | None = None
    last_applied_at: float | None = None  # time.time() of the last applied batch
    caught_up: bool = False
    last_poll_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    last_batch_size: int = 0
    last_batch_seconds: float = 0.0


class ProjectionRunner:
    def __init__(
        self,
        name: str,
        tailer: Tailer,
        sink: Sink,
        batch_size: int = 1000,
        on_applied: OnApplied | None = None,
        start_cursor: Any = None,
        idle_wait: float = 1.0,
        max_backoff: float = 5.0,
        recheck_wait: float = 0.005,
    ) -> None:
        self.name = name
        self.tailer = tailer
        self.sink = sink
        self.batch_size = batch_size
        self.on_applied = on_applied
        self.start_cursor = start_cursor
        self.idle_wait = idle_wait
        self.max_backoff = max_backoff
        self.recheck_wait = recheck_wait
        self._status = RunnerStatus(name)
        self._lock = threading.Lock()
        self._progress = threading.Condition(self._lock)

    @property
    def status(self) -> RunnerStatus:
        with self._lock:
            return self._status

    def _set(self, **changes: Any) -> None:
        with self._lock:
            self._status = replace(self._status, **changes)
            self._progress.notify_all()

    def wait_for(self, position: int, timeout: float) -> bool:
        """Block until the applied watermark reaches ``position`` (read-your-writes)."""
        return wait_for_watermark(self._progress, lambda: self._status.watermark, position, timeout)

    def run(self, stop: threading.Event) -> None:
        backoff = 0.1
        recheck = self.recheck_wait
        cursor: Any = None
        loaded = False
        self._set(running=True)
        try:
            while not stop.is_set():
                try:
                    if not loaded:
                        saved, watermark = self.sink.load_checkpoint()
                        cursor = saved if saved is not None else self.start_cursor
                        self._set(watermark=watermark)
                        loaded = True
                    cursor, caught_up = self.step(cursor)
                    backoff = 0.1
                except Exception as exc:  # never skip: back off, resume from the sink's checkpoint
                    log.exception("projection %s failed; retrying in %.1fs", self.name, backoff)
                    loaded = False
                    self._set(last_error=f"{type(exc).__name__}: {exc}", last_error_at=time.time())
                    stop.wait(backoff)
                    backoff = min(backoff * 2, self.max_backoff)
                    continue
                if caught_up and not stop.is_set():
                    st = self.status
                    if st.watermark < st.last_position:
                        # applied, but the watermark (proof that nothing below is still in flight)
                        # waits on a concurrent transaction: look again soon, backing off
                        self.tailer.wait(timeout=recheck)
                        recheck = min(recheck * 2, self.idle_wait)
                    else:
                        recheck = self.recheck_wait
                        self.tailer.wait(timeout=self.idle_wait)
        finally:
            try:
                self.sink.flush()
            except Exception:
                log.exception("final flush of %s failed", self.name)
            self._set(running=False)

    def step(self, cursor: Any) -> tuple[Any, bool]:
        """One fetch/apply turn; returns (next cursor, caught_up)."""
        batch = self.tailer.fetch(cursor, self.batch_size)
        events = list(batch.events)
        now = time.time()
        if events:
            started = time.perf_counter()
            self.sink.apply(events, batch.cursor, batch.watermark)
            elapsed = time.perf_counter() - started
            st = self.status
            self._set(
                applied=st.applied + len(events),
                last_position=max(st.last_position, max(e.position for e in events)),
                last_recorded_at=max(e.recorded_at for e in events),
                last_applied_at=now,
                last_batch_size=len(events),
                last_batch_seconds=elapsed,
            )
        elif batch.watermark > self.status.watermark:
            self.sink.apply([], batch.cursor, batch.watermark)  # the watermark moved on without new events
        previous = self.status.watermark
        watermark = max(previous, batch.watermark)
        # listeners (cache invalidation) hear of the applied events before the new watermark is
        # published, so a reader that sees the watermark never gets a value cached before them
        if (events or watermark > previous) and self.on_applied is not None:
            try:
                self.on_applied(events, watermark)
            except Exception:
                log.exception("on_applied callback of %s failed", self.name)
        self._set(watermark=watermark, caught_up=batch.caught_up, last_poll_at=now)
        self.sink.tick()  # deferred/batched writes after the watermark: off the freshness path
        return batch.cursor, batch.caught_up


def wait_for_watermark(
    progress: threading.Condition, watermark: Callable[[], int], position: int, timeout: float
) -> bool:
    """Block on ``progress`` (notified when the watermark moves) until ``watermark()`` >= ``position``."""
    deadline = time.monotonic() + timeout
    with progress:
        while watermark() < position:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            progress.wait(left)
        return True


def chunks(events: Iterable[RecordedEvent], size: int) -> Iterable[list[RecordedEvent]]:
    chunk: list[RecordedEvent] = []
    for e in events:
        chunk.append(e)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def rebuild(events: Iterable[RecordedEvent], sink: Sink, batch_size: int = 1000) -> int:
    """Replay events (position order) into a sink without checkpointing; returns the count."""
    count = 0
    for chunk in chunks(events, batch_size):
        sink.apply(chunk, None, chunk[-1].position)
        count += len(chunk)
    sink.flush()
    return count

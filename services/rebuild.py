"""Rebuild a read model from position 0 inside the running API process, without stopping the API.

chdb allows one data path per process, so the rebuild of the embedded ClickHouse runs in the
``agentflow up`` process (POST /v1/admin/projections/{name}/rebuild; ``agentflow projections rebuild
NAME`` calls it and prints the progress).

``clickhouse`` -- build beside, then swap. A fresh database ``<db>_rebuild`` is filled by a
ClickHouseSink (the same projection code) from the store's events, in position order, bounded by
the live projector's watermark (so the read is complete), catching up while the live projector keeps
serving. Then the live projector is paused between two batches (SinkGate), its deferred rows flushed,
the shadow caught up with every committed event (re-applying an event is a no-op for the read model:
rows skip versions they already hold, event rows are keyed), every table swapped with ``EXCHANGE
TABLES`` under the chdb lock (readers see either the old or the new tables, never a mix), the live
sink's row cache and the API's read cache dropped, and the projector resumed on the new tables.
Readers never see a partial read model; during the pause (one catch-up batch and the swap) the
watermark does not move, so min_position reads wait a little longer.

``iceberg`` -- truncate and replay. The lake is not on the API's read path; the lake projector is
paused, flushed, its tables overwritten with empty snapshots that carry no checkpoint, its sink
state reset and its tailer restarted from position 0 (TailerGate), then resumed: the lake projector
itself replays the whole store through the same code. Lake readers see a partial lake meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from connectors.clickhouse import ClickHouseStore
from connectors.clickhouse_sink import ClickHouseSink
from connectors.event_store import PostgresEventStore
from domain.events import RecordedEvent
from projections.rows import TABLES

log = logging.getLogger("agentflow.rebuild")

NAMES = ("clickhouse", "iceberg")


class SinkGate:
    """A runner's sink behind a lock: ``paused()`` holds the projector between two batches. Every
    other attribute is the wrapped sink's."""

    def __init__(self, sink: Any) -> None:
        self.sink = sink
        self.name: str = sink.name
        self._lock = threading.RLock()

    def load_checkpoint(self) -> tuple[Any | None, int]:
        with self._lock:
            return self.sink.load_checkpoint()  # type: ignore[no-any-return]

    def apply(self, events: Sequence[RecordedEvent], cursor: Any | None, watermark: int) -> None:
        with self._lock:
            self.sink.apply(events, cursor, watermark)

    def tick(self) -> None:
        with self._lock:
            self.sink.tick()

    def flush(self) -> None:
        with self._lock:
            self.sink.flush()

    @contextlib.contextmanager
    def paused(self) -> Iterator[Any]:
        with self._lock:
            yield self.sink

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sink, name)


class TailerGate:
    """A runner's tailer that can be told to start over from the beginning of the store."""

    def __init__(self, tailer: Any) -> None:
        self.tailer = tailer
        self._restart = False

    def restart(self) -> None:
        self._restart = True

    def fetch(self, cursor: Any, limit: int = 1000) -> Any:
        if self._restart:
            self._restart = False
            cursor = None
        return self.tailer.fetch(cursor, limit)

    def wait(self, timeout: float) -> object:
        return self.tailer.wait(timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tailer, name)


@dataclass
class RebuildProgress:
    name: str
    state: str = "running"  # running | done | failed
    phase: str = "starting"
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    target_position: int = 0
    position: int = 0
    events: int = 0
    error: str | None = None

    def public(self) -> dict[str, Any]:
        out = asdict(self)
        end = self.finished_at or time.time()
        elapsed = max(end - self.started_at, 1e-6)
        out["elapsed_seconds"] = round(elapsed, 3)
        out["events_per_second"] = round(self.events / elapsed, 1)
        out["percent"] = (
            100.0 if self.state == "done"
            else round(min(100.0, 100.0 * self.position / self.target_position), 1) if self.target_position
            else 0.0
        )  # fmt: skip
        return out


class RebuildBusy(Exception):
    pass


class UnknownReadModel(LookupError):
    pass


class NotProjectedHere(LookupError):
    """The read model exists, but this process does not project it (distributed, or no lake)."""


class Rebuilds:
    """At most one rebuild per read model at a time, each in its own thread; progress kept in memory."""

    def __init__(
        self,
        store: PostgresEventStore,
        clickhouse: ClickHouseStore,
        serving_gate: SinkGate | None,
        serving_watermark: Callable[[], int],
        on_swapped: Callable[[], None] = lambda: None,
        lake_gate: SinkGate | None = None,
        lake_tailer: TailerGate | None = None,
        lake_applied: Callable[[], int] = lambda: 0,
        batch_size: int = 2000,
    ) -> None:
        self.store = store
        self.clickhouse = clickhouse
        self.serving_gate = serving_gate
        self.serving_watermark = serving_watermark
        self.on_swapped = on_swapped
        self.lake_gate = lake_gate
        self.lake_tailer = lake_tailer
        self.lake_applied = lake_applied
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self.progress: dict[str, RebuildProgress] = {}
        self._threads: dict[str, threading.Thread] = {}

    def available(self) -> list[str]:
        out = []
        if self.serving_gate is not None:
            out.append("clickhouse")
        if self.lake_gate is not None and self.lake_tailer is not None:
            out.append("iceberg")
        return out

    def select(self, name: str) -> list[str]:
        """The read models ``name`` stands for: itself, or for ``all`` every one projected here."""
        if name == "all":
            return self.available()
        if name not in NAMES:
            raise UnknownReadModel(f"unknown read model {name!r}; expected one of {[*NAMES, 'all']}")
        if name not in self.available():
            raise NotProjectedHere(f"{name} is not projected by this process "
                                   "(distributed deployment, or the lake is disabled)")  # fmt: skip
        return [name]

    def start_selected(self, name: str) -> list[RebuildProgress]:
        """Start rebuilding what ``name`` stands for (``select``); RebuildBusy if one is running."""
        return [self.start(n) for n in self.select(name)]

    def latest(self, name: str) -> list[RebuildProgress]:
        """The latest rebuild of each read model ``name`` stands for that has run in this process."""
        return [self.progress[n] for n in self.select(name) if n in self.progress]

    def start(self, name: str) -> RebuildProgress:
        if name not in NAMES:
            raise ValueError(f"unknown read model {name!r} (expected one of {NAMES})")
        if name not in self.available():
            raise LookupError(f"{name} is not projected by this process")
        with self._lock:
            current = self.progress.get(name)
            if current is not None and current.state == "running":
                raise RebuildBusy(f"a rebuild of {name} is already running")
            progress = RebuildProgress(name)
            self.progress[name] = progress
            target = self._rebuild_clickhouse if name == "clickhouse" else self._rebuild_iceberg
            thread = threading.Thread(target=self._run, args=(target, progress), name=f"rebuild-{name}")
            thread.daemon = True
            self._threads[name] = thread
            thread.start()
        return progress

    def wait(self, name: str, timeout: float | None = None) -> RebuildProgress:
        thread = self._threads.get(name)
        if thread is not None:
            thread.join(timeout)
        return self.progress[name]

    def _run(self, target: Callable[[RebuildProgress], None], progress: RebuildProgress) -> None:
        try:
            target(progress)
            progress.phase = "done"
            progress.state = "done"
        except Exception as exc:
            log.exception("rebuild of %s failed", progress.name)
            progress.error = f"{type(exc).__name__}: {exc}"
            progress.state = "failed"
        finally:
            progress.finished_at = time.time()

    # -- clickhouse: shadow database, catch up, pause, swap ---------------------------------------
    def _replay(self, sink: ClickHouseSink, after: int, until: int | None, progress: RebuildProgress) -> int:
        while True:
            events = self.store.read_all(after, limit=self.batch_size, max_position=until)
            if not events:
                return after
            sink.apply(events, None, events[-1].position)
            after = events[-1].position
            progress.position = after
            progress.events += len(events)

    def _rebuild_clickhouse(self, progress: RebuildProgress) -> None:
        gate = self.serving_gate
        assert gate is not None
        live = self.clickhouse
        shadow = live.on_database(f"{live.database}_rebuild")  # same engine and lock as the live store
        try:
            shadow.drop_all()
            shadow.ensure_schema()
            sink = ClickHouseSink(shadow, None, name="clickhouse-rebuild", defer_s=0)
            position = 0
            progress.phase = "replaying"
            for _ in range(20):  # catch up with the live projector while it keeps serving
                target = self.serving_watermark()
                progress.target_position = max(target, progress.target_position)
                position = self._replay(sink, position, target, progress)
                if self.serving_watermark() - position <= self.batch_size:
                    break
            progress.phase = "swapping"
            with gate.paused() as live_sink:
                live_sink.flush()  # deferred rows reach the old tables: nothing is left in between
                # every committed event (the live projector applied a subset of these); re-applying
                # one the shadow already holds changes nothing
                position = self._replay(sink, position, None, progress)
                progress.target_position = max(position, progress.target_position)
                with live._lock:
                    for table in TABLES:
                        live.client.command(f"EXCHANGE TABLES {live.t(table)} AND {shadow.t(table)}")
                cache = getattr(live_sink, "cache", None)
                if cache is not None:
                    cache.clear()
                self.on_swapped()
            log.info("clickhouse read model rebuilt from %d events (up to position %d)", progress.events,
                     position)  # fmt: skip
        finally:
            with contextlib.suppress(Exception):
                shadow.drop_all()  # the old tables, after a swap

    # -- iceberg: truncate, reset the checkpoint, let the lake projector replay -------------------
    def _rebuild_iceberg(self, progress: RebuildProgress) -> None:
        gate, tailer = self.lake_gate, self.lake_tailer
        assert gate is not None and tailer is not None
        import pyarrow as pa

        from connectors.iceberg_sink import SCHEMAS

        progress.phase = "truncating"
        with gate.paused() as lake:
            lake.flush()
            target = self.store.head_position()
            progress.target_position = target
            for name, table in lake.tables.items():
                table.overwrite(pa.Table.from_pylist([], schema=SCHEMAS[name]))  # no cursor: checkpoint reset
            lake._reset()
            tailer.restart()
            applied_before = self.lake_applied()
        progress.phase = "replaying"
        while True:  # the lake projector replays; its committed watermark is the progress
            committed = int(gate.sink.committed_watermark)
            progress.position = min(committed, target)
            progress.events = max(0, self.lake_applied() - applied_before)
            if committed >= target:
                break
            time.sleep(0.2)

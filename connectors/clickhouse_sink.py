"""The runner Sink writing ClickHouse read models.

Per batch: prefetch the rows the batch needs and the cache does not know (one FINAL query per
table), project every event against (batch overlay -> deferred rows -> LRU cache -> ClickHouse), and
write the last version of every changed row of the tables the metrics read (``eager_tables``: one
INSERT per table) before ``apply`` returns, i.e. before the runner publishes the watermark. The
other tables (events, order lines, products, users, payments) and the checkpoint follow within
``defer_s`` (``tick``), or at once when a reader needs them (``flush``: entity reads, error_rate).
Each chdb INSERT costs 5-15 ms whatever its size, so this keeps a new order's freshness at one
INSERT and batches the rest. A crash before the checkpoint replays the batches after it:
per-stream rows skip events at or below their version, events/order_lines rows are keyed, so
nothing is counted twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from connectors.clickhouse import ClickHouseStore, normalize_row
from domain.events import RecordedEvent
from projections.rows import (
    EVENTS,
    TABLES,
    Key,
    Row,
    created_keys,
    invalid_reason,
    lookup_keys,
    project,
)
from readmodels.schema import METRIC_TABLES

log = logging.getLogger(__name__)

_MISSING: Any = object()


class CheckpointPort(Protocol):
    def load(self, name: str) -> tuple[Any | None, int]: ...
    def save(self, name: str, cursor: Any, watermark: int) -> None: ...


class RowCache:
    """LRU of rows by (table, key); None is cached too (known absent)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._data: OrderedDict[tuple[str, Key], Row | None] = OrderedDict()

    def get(self, table: str, key: Key) -> Row | None:
        k = (table, key)
        value = self._data.get(k, _MISSING)
        if value is _MISSING:
            return _MISSING  # type: ignore[no-any-return]
        self._data.move_to_end(k)
        return value  # type: ignore[no-any-return]

    def put(self, table: str, key: Key, row: Row | None) -> None:
        self._data[(table, key)] = row
        self._data.move_to_end((table, key))
        while len(self._data) > self.capacity:
            self._data.popitem(last=False)

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


class _BatchLookup:
    def __init__(self, sink: ClickHouseSink) -> None:
        self.sink = sink
        self.pending: dict[str, dict[Key, Row]] = {t: {} for t in TABLES}

    def get(self, table: str, key: Key) -> Row | None:
        row = self.pending[table].get(key)
        if row is not None:
            return row
        row = self.sink.deferred_row(table, key)
        if row is not None:
            return row
        cached = self.sink.cache.get(table, key)
        if cached is not _MISSING:
            return cached
        self.sink.misses += 1
        found = self.sink.store.get_row(table, key)
        self.sink.cache.put(table, key, found)
        return found




class ClickHouseSink:
    def __init__(
        self,
        store: ClickHouseStore,
        checkpoints: CheckpointPort | None,
        name: str = "clickhouse",
        cache_size: int = 200_000,
        eager_tables: frozenset[str] = METRIC_TABLES,
        defer_s: float = 0.2,
        defer_max_rows: int = 5000,
        reject: Callable[[RecordedEvent, str], None] | None = None,
    ) -> None:
        """``reject`` receives each invalid event (domain validation) with its reason; it is skipped."""
        self.store = store
        self.reject = reject
        self.checkpoints = checkpoints
        self.name = name
        self.cache = RowCache(cache_size)
        self.misses = 0
        self.last_write_seconds = 0.0
        self.last_flush_seconds = 0.0
        self.eager_tables = eager_tables
        self.defer_s = defer_s
        self.defer_max_rows = defer_max_rows
        self._deferred_lock = threading.RLock()
        self._deferred: dict[str, dict[Key, Row]] = {t: {} for t in TABLES}
        self._deferred_rows = 0
        self._deferred_cursor: tuple[Any, int] | None = None
        self._deferred_since: float | None = None

    def load_checkpoint(self) -> tuple[Any | None, int]:
        try:
            self.flush()  # the runner (re)starts from the checkpoint: make it as recent as possible
        except Exception:
            log.exception("flushing deferred rows before reloading the checkpoint failed")
        if self.checkpoints is None:
            return None, 0
        return self.checkpoints.load(self.name)

    def deferred_row(self, table: str, key: Key) -> Row | None:
        return self._deferred[table].get(key)

    def _prefetch(self, events: Sequence[RecordedEvent]) -> None:
        """Load the rows the batch will look up and neither the deferred rows nor the cache hold (one
        query per table). Rows the batch's own events create are known absent (``created_keys``): a
        new order or session costs no query."""
        wanted: dict[str, set[Key]] = {}
        cache = self.cache
        deferred = self._deferred
        for e in events:
            if e.stream_version == 1:
                for table, key in created_keys(e):
                    if cache.get(table, key) is _MISSING and key not in deferred[table]:
                        cache.put(table, key, None)
            for table, key in lookup_keys(e):
                if cache.get(table, key) is _MISSING and key not in deferred[table]:
                    wanted.setdefault(table, set()).add(key)
        for table, keys in wanted.items():
            found = self.store.get_rows(table, keys)
            for key in keys:
                cache.put(table, key, found.get(key))

    def apply(self, events: Sequence[RecordedEvent], cursor: Any | None, watermark: int) -> None:
        defer = cursor is not None and self.defer_s > 0  # rebuilds and tests write everything now
        events = self._valid(events)
        try:
            self._prefetch(events)
            lookup = _BatchLookup(self)
            for e in events:
                for change in project(e, lookup):
                    lookup.pending[change.table][change.key] = normalize_row(change.table, change.row)
            started = time.perf_counter()
            for table in self.eager_tables:
                rows = lookup.pending[table]
                if rows:
                    self.store.insert_rows(table, list(rows.values()))
            self.last_write_seconds = time.perf_counter() - started
        except Exception:
            self.cache.clear()  # the cache may hold rows that never reached ClickHouse
            raise
        with self._deferred_lock:
            for table, rows in lookup.pending.items():
                if table not in self.eager_tables and rows:
                    self._deferred[table].update(rows)
                    self._deferred_rows += len(rows)
            if cursor is not None:
                self._deferred_cursor = (cursor, watermark)
            if self._deferred_since is None:
                self._deferred_since = time.monotonic()
            due = not defer or self._deferred_rows >= self.defer_max_rows
        for table, rows in lookup.pending.items():
            if table == EVENTS:
                continue
            for key, row in rows.items():
                self.cache.put(table, key, row)
        if due:
            self.flush()

    # Deferred rows all come from batches that were applied in full (their eager rows written), so
    # they stay valid across a failed batch; a checkpoint that lags only replays more after a crash.

    def _valid(self, events: Sequence[RecordedEvent]) -> Sequence[RecordedEvent]:
        bad = [(e, reason) for e in events if (reason := invalid_reason(e)) is not None]
        if not bad:
            return events
        for e, reason in bad:
            log.warning("invalid event %s at position %s not projected: %s", e.event_id, e.position, reason)
            if self.reject is not None:
                self.reject(e, reason)
        skipped = {e.position for e, _ in bad}
        return [e for e in events if e.position not in skipped]

    def pending_rows(self) -> int:
        return self._deferred_rows

    def tick(self) -> None:
        since = self._deferred_since
        if since is not None and time.monotonic() - since >= self.defer_s:
            self.flush()

    def flush(self) -> None:
        """Write the deferred rows (one INSERT per table), then save the latest checkpoint. Thread-safe;
        readers of a deferred table call it first."""
        with self._deferred_lock:
            if self._deferred_since is None:
                return
            started = time.perf_counter()
            for table, rows in self._deferred.items():
                if rows:
                    self.store.insert_rows(table, list(rows.values()))
            if self._deferred_cursor is not None and self.checkpoints is not None:
                self.checkpoints.save(self.name, *self._deferred_cursor)
            # only now (rows in ClickHouse) may lookups stop finding them here
            self._deferred = {t: {} for t in TABLES}
            self._deferred_rows = 0
            self._deferred_cursor = None
            self._deferred_since = None
            self.last_flush_seconds = time.perf_counter() - started

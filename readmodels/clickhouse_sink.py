"""The runner Sink writing ClickHouse read models.

Per batch: prefetch the rows the batch needs (one FINAL query per table), project every event
against (batch overlay -> LRU cache -> ClickHouse), write the last version of every changed row with
one INSERT per table, then save the checkpoint. A crash after the rows but before the checkpoint
replays the batch: per-stream rows skip events at or below their version, events/order_lines
rows are keyed, so nothing is counted twice.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Protocol

from domain.events import RecordedEvent
from projections.rows import TABLES, Key, Row, lookup_keys, project
from readmodels.clickhouse import ClickHouseStore, normalize_row

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
    ) -> None:
        self.store = store
        self.checkpoints = checkpoints
        self.name = name
        self.cache = RowCache(cache_size)
        self.misses = 0
        self.last_write_seconds = 0.0

    def load_checkpoint(self) -> tuple[Any | None, int]:
        if self.checkpoints is None:
            return None, 0
        return self.checkpoints.load(self.name)

    def _prefetch(self, events: Sequence[RecordedEvent]) -> None:
        wanted: dict[str, set[Key]] = {}
        for e in events:
            for table, key in lookup_keys(e):
                if self.cache.get(table, key) is _MISSING:
                    wanted.setdefault(table, set()).add(key)
        for table, keys in wanted.items():
            found = self.store.get_rows(table, keys)
            for key in keys:
                self.cache.put(table, key, found.get(key))

    def apply(self, events: Sequence[RecordedEvent], cursor: Any | None, watermark: int) -> None:
        try:
            self._prefetch(events)
            lookup = _BatchLookup(self)
            for e in events:
                for change in project(e, lookup):
                    lookup.pending[change.table][change.key] = normalize_row(change.table, change.row)
            started = time.perf_counter()
            for table, rows in lookup.pending.items():
                self.store.insert_rows(table, list(rows.values()))
            self.last_write_seconds = time.perf_counter() - started
        except Exception:
            self.cache.clear()  # the cache may hold rows that never reached ClickHouse
            raise
        for table, rows in lookup.pending.items():
            if table == "events":
                continue
            for key, row in rows.items():
                self.cache.put(table, key, row)
        if cursor is not None and self.checkpoints is not None:
            self.checkpoints.save(self.name, cursor, watermark)

    def tick(self) -> None:
        return None

    def flush(self) -> None:
        return None

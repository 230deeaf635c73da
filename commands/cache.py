"""In-process LRU of folded aggregates so hot streams are refreshed incrementally, not re-folded.

Cached aggregates are never mutated after ``put`` (decide methods are pure); a loader that finds
newer events clones the cached state before applying them. Only stored events reach the cache:
state is cached after a load, or after a successful append (decided state + its appended events).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from domain.base import Aggregate

CacheKey = tuple[str, str, str]  # (tenant_id, stream_type, stream_id)

DEFAULT_MAX_STREAMS = 10_000


class AggregateCache:
    def __init__(self, max_streams: int = DEFAULT_MAX_STREAMS) -> None:
        self.max_streams = max_streams
        self._items: OrderedDict[CacheKey, tuple[int, Aggregate]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: CacheKey) -> tuple[int, Aggregate] | None:
        """(version, aggregate); the aggregate is shared: clone it before applying events."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item

    def put(self, key: CacheKey, version: int, aggregate: Aggregate) -> None:
        """Keep the newest version only; the caller hands over ``aggregate`` and must not mutate it."""
        if self.max_streams <= 0:
            return
        with self._lock:
            current = self._items.get(key)
            if current is not None and current[0] >= version:
                self._items.move_to_end(key)
                return
            self._items[key] = (version, aggregate)
            self._items.move_to_end(key)
            while len(self._items) > self.max_streams:
                self._items.popitem(last=False)

    def evict(self, key: CacheKey) -> None:
        with self._lock:
            self._items.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

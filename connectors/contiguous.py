"""Contiguity of applied positions (pure): the serving loader's watermark.

Serving upserts arrive from Kafka out of position order (partitions, retries, duplicates), while the
event store's positions have gaps (rolled-back transactions) and commit out of order. The watermark is
the highest P such that every position <= P was applied (or dead-lettered) or will never exist.

Two inputs: ``applied(positions)`` from Kafka, and ``observed(positions, tail_watermark)`` from a
commit-order-safe tail of the event store (connectors/tailer.py), whose watermark T means "every
position <= T has been observed or never exists". Positions observed but not yet applied are
*expected*; positions applied but not yet observed are *ahead*. Then

    watermark = max(previous, min(T, min(expected) - 1))

Every position <= T that is not expected was observed and applied (or never exists). A restart
begins from a saved watermark W: the tail observes only positions > W and Kafka redelivers every
message with a position > W (the loader's offset rule), so the state rebuilds itself.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable


class Contiguity:
    def __init__(self, watermark: int = 0) -> None:
        self._watermark = watermark
        self._tail = watermark  # T: every position <= T observed (or <= the starting watermark)
        self._expected: set[int] = set()
        self._expected_heap: list[int] = []  # lazy: may hold positions no longer expected
        self._ahead: set[int] = set()
        # lazy, for pruning: a duplicate of an observed position that T has not passed yet lands in
        # _ahead again (nothing will observe it twice); it is dropped once the watermark passes it
        self._ahead_heap: list[int] = []
        self.max_observed = watermark

    @property
    def watermark(self) -> int:
        return self._watermark

    @property
    def tail_watermark(self) -> int:
        return self._tail

    @property
    def expected(self) -> int:
        """Positions observed in the store and not applied yet."""
        return len(self._expected)

    @property
    def ahead(self) -> int:
        """Positions applied and not observed in the store yet."""
        return len(self._ahead)

    def lowest_expected(self) -> int | None:
        heap = self._expected_heap
        while heap and heap[0] not in self._expected:
            heapq.heappop(heap)
        return heap[0] if heap else None

    def applied(self, positions: Iterable[int]) -> None:
        """Positions applied (or dead-lettered); duplicates and positions <= watermark are ignored."""
        for p in positions:
            if p <= self._watermark:
                continue
            if p in self._expected:
                self._expected.discard(p)
            elif p > self._tail and p not in self._ahead:
                self._ahead.add(p)
                heapq.heappush(self._ahead_heap, p)
            # else: p <= T was observed (it exists) and is not expected: a duplicate

    def observed(self, positions: Iterable[int], tail_watermark: int) -> None:
        """Positions the store tail yielded, and the tail's watermark after yielding them."""
        for p in positions:
            if p <= self._watermark:
                continue
            if p > self.max_observed:
                self.max_observed = p
            if p in self._ahead:
                self._ahead.discard(p)
            elif p not in self._expected:
                self._expected.add(p)
                heapq.heappush(self._expected_heap, p)
        if tail_watermark > self._tail:
            self._tail = tail_watermark
            if tail_watermark > self.max_observed:
                self.max_observed = tail_watermark

    def advance(self) -> int:
        """Recompute and return the watermark (never moves backwards)."""
        low = self.lowest_expected()
        candidate = self._tail if low is None else min(self._tail, low - 1)
        if candidate > self._watermark:
            self._watermark = candidate
            if len(self._expected_heap) > 4 * len(self._expected) + 1024:
                self._expected_heap = sorted(self._expected)  # shed lazily deleted entries
            heap = self._ahead_heap
            while heap and heap[0] <= candidate:
                self._ahead.discard(heapq.heappop(heap))
            if len(heap) > 4 * len(self._ahead) + 1024:
                self._ahead_heap = sorted(self._ahead)
        return self._watermark

"""The window-counter port (connectors/rate_windows.py ``RateWindows``): what the budgets rely on.

Run over MemoryWindows (tests/unit/test_rate_windows.py) and RedisWindows on a real redis-server
(tests/integration/test_rate_windows_redis.py). A subclass provides ``windows``. The windows here are a
day long: a test runs within one window (or, across a boundary, the previous window still counts in
full for the first minutes), so the counts do not depend on the clock.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from connectors.rate_windows import RateWindows

DAY = 86400.0


def bucket() -> str:
    return f"contract-{uuid.uuid4().hex[:12]}"


class RateWindowsContract:
    @pytest.fixture()
    def windows(self) -> RateWindows:
        raise NotImplementedError("a concrete suite provides the counter store")

    def test_exactly_limit_requests_fit_then_none(self, windows: Any) -> None:
        b = bucket()
        answers = [windows.hit(b, 5, DAY) for _ in range(7)]
        assert [a.allowed for a in answers] == [True] * 5 + [False] * 2
        # the current window holds what fitted, the refused ones are not counted
        assert [a.current for a in answers] == [1, 2, 3, 4, 5, 5, 5]
        assert {a.previous for a in answers} == {0}

    def test_asking_without_counting_counts_nothing(self, windows: Any) -> None:
        b = bucket()
        assert all(windows.hit(b, 2, DAY, count=False).allowed for _ in range(5))
        assert windows.hit(b, 2, DAY).current == 1
        assert windows.hit(b, 2, DAY, count=False).current == 1
        assert windows.hit(b, 2, DAY).current == 2
        asked = windows.hit(b, 2, DAY, count=False)
        assert not asked.allowed and asked.current == 2

    def test_buckets_are_separate(self, windows: Any) -> None:
        first, second = bucket(), bucket()
        assert [windows.hit(first, 1, DAY).allowed for _ in range(2)] == [True, False]
        assert windows.hit(second, 1, DAY).allowed
        assert not windows.hit(first, 1, DAY).allowed

    def test_a_larger_limit_lets_more_through_on_the_same_counts(self, windows: Any) -> None:
        b = bucket()
        assert [windows.hit(b, 2, DAY).allowed for _ in range(3)] == [True, True, False]
        assert windows.hit(b, 3, DAY).allowed  # the limit is the caller's, per request

    def test_the_answer_carries_the_counter_clock(self, windows: Any) -> None:
        import time

        before = time.time()
        now = windows.hit(bucket(), 1, DAY).now
        after = time.time()
        # Redis's clock is this machine's: the same clock within a second either way
        assert before - 1.0 <= now <= after + 1.0

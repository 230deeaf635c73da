"""What a window count means for a request: X-RateLimit-* values, Retry-After, and the failed-auth throttle,
checked against a step-by-step simulation on a manual clock."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from connectors.rate_windows import MemoryWindows, WindowCount
from services.rate_limits import READ_BUDGET, WRITE_BUDGET, RateLimits, retry_after, verdict

W = 60.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def fits(previous: int, current: int, now: float, limit: int) -> bool:
    """The test's own sliding estimate: the previous window weighs what of it is still in the last minute."""
    start = math.floor(now / W) * W
    return previous * (1 - (now - start) / W) + current + 1 <= limit


def test_headers_count_down_and_reset_when_the_window_has_slid_past() -> None:
    clock = Clock(1200.0)  # a window starts here
    limits = RateLimits(MemoryWindows(clock), read_rpm=3, write_rpm=100, auth_failures=0)
    seen = [limits.take(READ_BUDGET, "key") for _ in range(4)]
    assert [v.remaining for v in seen if v] == [2, 1, 0, 0]
    assert [v.allowed for v in seen if v] == [True, True, True, False]
    assert {v.limit for v in seen if v} == {3}
    assert {v.reset_at for v in seen if v} == {1200 + 120}  # this window's requests slide out after the next
    refused = seen[-1]
    # the rest of this window, then until a third of its 3 requests slid out of the next one
    assert refused is not None and refused.retry_after_s == 60.0 + (60.0 - (3 - 1) * 60.0 / 3)
    assert limits.take(WRITE_BUDGET, "key").remaining == 99  # type: ignore[union-attr]  # another budget
    assert limits.take(READ_BUDGET, "other").remaining == 2  # type: ignore[union-attr]  # another key


def test_zero_means_no_budget() -> None:
    limits = RateLimits(MemoryWindows(), read_rpm=0, write_rpm=0, auth_failures=0)
    assert limits.take(READ_BUDGET, "k") is None and limits.take(WRITE_BUDGET, "k") is None
    limits.auth_failed("10.0.0.1", "invalid")
    assert limits.auth_throttled("10.0.0.1") == 0.0


def test_failed_authentication_is_throttled_per_address() -> None:
    clock = Clock(0.0)
    limits = RateLimits(MemoryWindows(clock), read_rpm=0, write_rpm=0, auth_failures=3)
    for _ in range(3):
        assert limits.auth_throttled("10.0.0.1") == 0.0
        limits.auth_failed("10.0.0.1", "invalid")
    wait = limits.auth_throttled("10.0.0.1")
    assert wait == 60.0 + 60.0 - 2 * 60.0 / 3  # next window, once a third of this one's 3 slid out
    assert limits.auth_throttled("10.0.0.2") == 0.0
    clock.now += wait
    assert limits.auth_throttled("10.0.0.1") == 0.0


@given(
    limit=st.integers(1, 50),
    previous=st.integers(0, 60),
    current=st.integers(0, 60),
    offset=st.floats(0.0, 59.999),
)
def test_retry_after_is_the_first_moment_one_more_fits(limit: int, previous: int, current: int,
                                                       offset: float) -> None:  # fmt: skip
    current = min(current, limit)  # a window never counts more than fitted
    now = 6000.0 + offset
    if fits(previous, current, now, limit):
        return
    wait = retry_after(WindowCount(False, previous, current, now), limit, W)
    later = now + wait

    def counts_at(t: float) -> tuple[int, int]:  # the counts as time passes with no more requests
        moved = math.floor(t / W) - math.floor(now / W)
        return (previous, current) if moved == 0 else (current, 0) if moved == 1 else (0, 0)

    assert fits(*counts_at(later + 1e-6), later + 1e-6, limit)
    if wait > 1e-3:
        assert not fits(*counts_at(later - 1e-3), later - 1e-3, limit)


@given(limit=st.integers(1, 20), requests=st.integers(0, 40), offset=st.floats(0.0, 119.0))
def test_remaining_and_reset_match_a_simulation(limit: int, requests: int, offset: float) -> None:
    clock = Clock(3000.0)
    windows = MemoryWindows(clock)
    for _ in range(requests):
        windows.hit("k", limit, W)
    clock.now = 3000.0 + offset
    count = windows.hit("k", limit, W)
    found = verdict(count, limit, W)
    previous, current = count.previous, count.current
    start = math.floor(clock.now / W) * W
    estimate = previous * (1 - (clock.now - start) / W) + current
    assert found.remaining == max(0, math.floor(limit - estimate + 1e-9))
    assert found.allowed == count.allowed
    # after reset_at nothing counted so far is inside the sliding window any more
    assert found.reset_at >= clock.now
    assert math.floor(found.reset_at / W) * W >= (start + W if current else start if previous else 0)

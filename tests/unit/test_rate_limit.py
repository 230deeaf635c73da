from __future__ import annotations

import pytest

from services.rate_limit import RateLimiter, retry_after_header


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_the_limit_then_refuses_until_refilled() -> None:
    clock = Clock()
    limiter = RateLimiter(60, clock=clock)  # one a second, bursts of 60
    assert all(limiter.acquire("k") == 0.0 for _ in range(60))
    wait = limiter.acquire("k")
    assert wait == pytest.approx(1.0)
    assert retry_after_header(wait) == "1"
    clock.now += 1.0
    assert limiter.acquire("k") == 0.0
    assert limiter.acquire("k") > 0


def test_keys_have_their_own_buckets() -> None:
    clock = Clock()
    limiter = RateLimiter(1, clock=clock)
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") > 0
    assert limiter.acquire("b") == 0.0


def test_rejects_non_positive_limits() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0)

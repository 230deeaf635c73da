"""RedisWindows on a real redis-server: the window-counter contract (tests/port_contracts/rate_windows.py),
and what happens when Redis does not answer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from port_contracts.rate_windows import RateWindowsContract
from redis_server import RedisServer

from connectors.postgres_cluster import free_port
from connectors.rate_windows import RedisWindows
from services.rate_limits import READ_BUDGET, RateLimits

pytestmark = pytest.mark.integration


class TestRedisWindowsContract(RateWindowsContract):
    @pytest.fixture()
    def windows(self, redis: RedisServer) -> Iterator[RedisWindows]:
        windows = RedisWindows(redis.url)
        try:
            yield windows
        finally:
            windows.close()


def test_two_clients_share_one_budget(redis: RedisServer) -> None:
    first, second = RedisWindows(redis.url), RedisWindows(redis.url)
    try:
        answers = [(first if i % 2 else second).hit("shared", 5, 86400).allowed for i in range(8)]
        assert answers == [True] * 5 + [False] * 3
    finally:
        first.close()
        second.close()


def test_an_unreachable_redis_lets_requests_through() -> None:
    """A budget store that does not answer must not take the API down: the request goes ahead."""
    limits = RateLimits(RedisWindows(f"redis://127.0.0.1:{free_port()}/0"), read_rpm=1, write_rpm=1,
                        auth_failures=1)  # fmt: skip
    assert limits.take(READ_BUDGET, "k") is None
    assert limits.auth_throttled("127.0.0.1") == 0.0

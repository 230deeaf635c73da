"""Sliding-window request counters: in this process, or in Redis when several API processes share the
budgets (services/rate_limits.py decides what a count means for a request).

A counter per bucket (an API key and budget, or a client address) counts requests in fixed windows; the
sliding estimate at a moment ``elapsed`` seconds into the current window weighs the previous window by the
part of it still inside the sliding one: ``previous * (window - elapsed) / window + current``. A request
is counted only when it fits (estimate + 1 <= limit), in one atomic step (a lock here, a Lua script in
Redis, whose clock is the only one the processes share).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol


class WindowCount(NamedTuple):
    """What a counter answered: whether one more request fit (and was counted, when asked to count), the
    counts of the previous and the current fixed window after that, and the counter's clock (unix s).
    (A tuple: one is made per request, and a frozen dataclass costs several times as much to build.)"""

    allowed: bool
    previous: int
    current: int
    now: float


# a WindowCount from a tuple of its fields, without the Python-level __new__ of a NamedTuple
_new_count = tuple.__new__


class RateWindows(Protocol):
    """The port: tests/port_contracts/rate_windows.py runs over every implementation."""

    def hit(self, bucket: str, limit: int, window_s: float, count: bool = True) -> WindowCount:
        """Whether one more request fits ``limit`` per sliding ``window_s``; counted when it fits and
        ``count`` (``count=False`` only asks)."""
        ...


class MemoryWindows:
    """Counters of this process (the embedded deployment, or one API process)."""

    SWEEP_EVERY = 4096  # hits between sweeps of buckets idle for two windows (addresses come and go)

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: dict[str, list[Any]] = {}  # bucket -> [window index, previous, current, window_s]
        self._hits = 0

    def hit(self, bucket: str, limit: int, window_s: float, count: bool = True) -> WindowCount:
        now = self._clock()
        index = now // window_s
        with self._lock:
            entry = self._counts.get(bucket)
            if entry is None or entry[3] != window_s or entry[0] < index - 1:
                entry = self._counts[bucket] = [index, 0, 0, window_s]
            elif entry[0] != index:  # the next window: the current one becomes the previous
                entry[:3] = index, entry[2], 0
            previous, current = entry[1], entry[2]
            allowed = previous * (window_s - (now - index * window_s)) / window_s + current + 1 <= limit
            if allowed and count:
                current = entry[2] = current + 1
            self._hits += 1
            if not self._hits % self.SWEEP_EVERY:
                self._sweep(now)
        return _new_count(WindowCount, (allowed, previous, current, now))  # type: ignore[no-any-return]

    def _sweep(self, now: float) -> None:
        for bucket, (index, _, _, window_s) in list(self._counts.items()):
            if index < now // window_s - 1:
                del self._counts[bucket]


# KEYS[1]: the bucket's key prefix; ARGV: limit, window seconds, count (1/0). Redis's own clock (TIME) for
# every API process; the current window's key expires two windows after its last request.
_HIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local index = math.floor(now / window)
local ck = KEYS[1] .. ':' .. string.format('%d', index)
local previous = tonumber(redis.call('GET', KEYS[1] .. ':' .. string.format('%d', index - 1)) or '0')
local current = tonumber(redis.call('GET', ck) or '0')
local allowed = 0
if previous * (window - (now - index * window)) / window + current + 1 <= limit then
  allowed = 1
  if ARGV[3] == '1' then
    current = redis.call('INCR', ck)
    redis.call('PEXPIRE', ck, math.ceil(window * 2000))
  end
end
return {allowed, previous, current, string.format('%.6f', now)}
"""


class RedisWindows:
    """Counters in Redis, shared by every API process that names the same Redis and namespace.

    Each answer is one round trip, with a short socket timeout: a slow or absent Redis raises (the caller
    decides: services/rate_limits.py lets the request through and says so in the log)."""

    def __init__(self, url: str, namespace: str = "agentflow:ratelimit", timeout_s: float = 0.25) -> None:
        import redis

        self.namespace = namespace
        self._client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self._script = self._client.register_script(_HIT)

    def hit(self, bucket: str, limit: int, window_s: float, count: bool = True) -> WindowCount:
        allowed, previous, current, now = self._script(
            keys=[f"{self.namespace}:{bucket}"], args=[limit, window_s, "1" if count else "0"]
        )
        return WindowCount(bool(allowed), int(previous), int(current), float(now))

    def close(self) -> None:
        self._client.close()

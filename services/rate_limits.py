"""Request budgets: per API key (a read budget and a write budget, sliding one-minute windows) and for
failed authentication per client address -- over a window counter in this process or in Redis
(connectors/rate_windows.py). docs/security.md says what the defaults are and why.

Every answer to an authenticated request carries ``X-RateLimit-Limit`` (the budget a minute),
``X-RateLimit-Remaining`` (requests left in the sliding window) and ``X-RateLimit-Reset`` (unix seconds
by which the whole budget is back if no more requests come); a refused one is 429 with ``Retry-After``
(whole seconds until one more request fits).
"""

from __future__ import annotations

import logging
import math
from math import ceil
from typing import Any, NamedTuple

from prometheus_client import Counter

from connectors.rate_windows import RateWindows, WindowCount

log = logging.getLogger("agentflow.ratelimit")

READ_BUDGET, WRITE_BUDGET = "read", "write"

AUTH_FAILURES = Counter(
    "agentflow_auth_failures_total",
    "Requests refused for their API key, by reason: missing, invalid, throttled (the client address had "
    "too many failures in the last minute)",
    ["reason"],
)
RATE_LIMITED = Counter(
    "agentflow_rate_limited_total", "Requests refused (429) for a key's budget, by budget", ["budget"]
)
LIMITER_ERRORS = Counter(
    "agentflow_rate_limiter_errors_total",
    "Budget checks that could not be made (the shared counter store did not answer); the request went ahead",
)


class Verdict(NamedTuple):
    """One request against one budget (a tuple: one is made per request)."""

    allowed: bool
    limit: int
    remaining: int
    reset_at: int  # unix seconds: the whole budget is back by then if no more requests come
    retry_after_s: float  # 0.0 when allowed

    def headers(self) -> list[tuple[bytes, bytes]]:
        # the limit and the reset instant change rarely: their header pairs are made once per value
        limit = _LIMIT_HEADERS.get(self.limit) or _limit_header(self.limit)
        reset = _last_reset[1] if _last_reset[0] == self.reset_at else _reset_header(self.reset_at)
        return [limit, (b"x-ratelimit-remaining", b"%d" % self.remaining), reset]


_LIMIT_HEADERS: dict[int, tuple[bytes, bytes]] = {}  # per configured limit: a handful
_last_reset: list[Any] = [None, None]  # the last reset instant and its header pair


def _limit_header(limit: int) -> tuple[bytes, bytes]:
    header = (b"x-ratelimit-limit", b"%d" % limit)
    if len(_LIMIT_HEADERS) < 64:
        _LIMIT_HEADERS[limit] = header
    return header


def _reset_header(reset_at: int) -> tuple[bytes, bytes]:
    header = (b"x-ratelimit-reset", b"%d" % reset_at)
    _last_reset[:] = reset_at, header  # two threads may race here: either pair is right for its value
    return header


# a Verdict from a tuple of its fields, without the Python-level __new__ of a NamedTuple (~0.3 us a request)
_new_verdict = tuple.__new__


def verdict(count: WindowCount, limit: int, window_s: float) -> Verdict:
    """What a window count means for the request (pure: the same for every counter store)."""
    allowed, previous, current, now = count
    start = now // window_s * window_s
    estimate = previous * (window_s - (now - start)) / window_s + current
    left = limit - estimate + 1e-9
    remaining = int(left) if left > 0 else 0  # floor, at least 0
    # the current window's requests slide out at the end of the next one, the previous one's at its end
    reset = start + 2 * window_s if current else start + window_s if previous else now
    retry = 0.0 if allowed else retry_after(count, limit, window_s)
    return _new_verdict(Verdict, (allowed, limit, remaining, ceil(reset), retry))  # type: ignore[return-value]


def retry_after(count: WindowCount, limit: int, window_s: float) -> float:
    """Seconds until one more request fits: later in this window as the previous one slides out, or in
    the next window as this one does."""
    start = math.floor(count.now / window_s) * window_s
    left_in_window = start + window_s - count.now
    previous, current = count.previous, count.current
    if current + 1 <= limit and previous > 0:
        # previous * (window - elapsed') / window + current + 1 <= limit
        return max(0.0, left_in_window - (limit - 1 - current) * window_s / previous)
    # next window: current * (window - elapsed') / window + 1 <= limit
    if not current:
        return left_in_window
    return left_in_window + max(0.0, window_s - (limit - 1) * window_s / current)


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


class RateLimits:
    """The per-key budgets (``limits``: budget -> requests a minute; a budget of 0 is unlimited) and the
    failed-authentication budget per client address (``auth_failures`` a minute; 0 = no throttling)."""

    def __init__(
        self, windows: RateWindows, read_rpm: int, write_rpm: int, auth_failures: int, window_s: float = 60.0
    ) -> None:
        self.windows = windows
        self.limits = {READ_BUDGET: read_rpm, WRITE_BUDGET: write_rpm}
        self.auth_failures = auth_failures
        self.window_s = window_s

    def take(self, budget: str, bucket: str) -> Verdict | None:
        """Count one request of ``bucket`` (a key) against ``budget``: None when that budget is unlimited
        or could not be checked (the request goes ahead)."""
        limit = self.limits[budget]
        if not limit:
            return None
        try:
            count = self.windows.hit(f"{budget}:{bucket}", limit, self.window_s)
        except Exception as exc:  # a budget store that is down must not take the API down
            LIMITER_ERRORS.inc()
            log.warning("rate limit not checked (%s): request allowed", type(exc).__name__)
            return None
        found = verdict(count, limit, self.window_s)
        if not found.allowed:
            RATE_LIMITED.labels(budget).inc()
        return found

    def auth_throttled(self, address: str) -> float:
        """Seconds until ``address`` may try a key again (0.0: it may now), without counting anything."""
        if not self.auth_failures:
            return 0.0
        try:
            count = self.windows.hit(f"auth:{address}", self.auth_failures, self.window_s, count=False)
        except Exception as exc:
            LIMITER_ERRORS.inc()
            log.warning("failed-authentication budget not checked (%s)", type(exc).__name__)
            return 0.0
        return 0.0 if count.allowed else max(retry_after(count, self.auth_failures, self.window_s), 1e-3)

    def auth_failed(self, address: str, reason: str) -> None:
        """Count a refused key from ``address`` (``reason``: missing, invalid)."""
        AUTH_FAILURES.labels(reason).inc()
        if not self.auth_failures:
            return
        try:
            self.windows.hit(f"auth:{address}", self.auth_failures, self.window_s)
        except Exception as exc:
            LIMITER_ERRORS.inc()
            log.warning("failed authentication not counted (%s)", type(exc).__name__)

"""When to ask again: 429 and 503 answers (after their ``Retry-After``, else an exponential backoff with
jitter) and lost connections -- but only requests that are safe to repeat: reads, and commands that
carry an ``Idempotency-Key`` (the API answers a repeated key with the original response)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 4
    backoff: float = 0.25  # the first wait when the answer names none; doubles each attempt
    max_backoff: float = 8.0
    max_retry_after: float = 120.0  # a longer Retry-After is raised (RateLimited.retry_after) instead
    statuses: frozenset[int] = frozenset({429, 503})

    def delay(self, attempt: int, retry_after: float | None) -> float | None:
        """Seconds to wait before retry number ``attempt`` (1-based), or None: do not retry."""
        if attempt > self.max_retries:
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after else None
        return random.uniform(0.5, 1.0) * min(self.max_backoff, self.backoff * 2 ** (attempt - 1))


NO_RETRIES = RetryPolicy(max_retries=0)


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After``: delay-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())

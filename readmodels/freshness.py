"""Reading your own writes, and saying how fresh a read is (API.md, "Consistency").

A read may pass ``min_position`` (the ``position`` its command returned): ``Freshness.wait`` holds it
(bounded by ``max_wait_s``, or the caller's shorter ``timeout_ms``) until the serving read models have
applied that position, then answers; past the bound it raises NotYetApplied (503, Retry-After) unless
the caller accepted a stale answer (``allow_stale``), which is then flagged ``meta.stale``. Every read
says how fresh it is in ``meta``: ``as_of``, ``is_historical``, ``freshness_seconds``, ``as_of_position``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from readmodels.errors import InvalidRead, NotYetApplied
from readmodels.ports import ReadProgress


@dataclass(slots=True)  # not frozen: one is made per read, and frozen dataclasses are slower to make
class ReadAfter:
    """A read's consistency request: wait for ``min_position`` (at most ``timeout_ms``); ``allow_stale``
    answers with the current value, flagged, instead of 503 when the wait runs out."""

    min_position: int | None = None
    timeout_ms: int | None = None
    allow_stale: bool = False



def iso(ts: datetime) -> str:
    """UTC ISO-8601 with a ``Z``."""
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_as_of(raw: str | None, now: datetime | None = None) -> datetime | None:
    """``as_of`` of a read: an ISO-8601 instant not in the future (naive means UTC); None when absent."""
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidRead("invalid_as_of", "as_of must be an ISO-8601 timestamp") from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if value > (now or datetime.now(UTC)):
        raise InvalidRead("as_of_in_future", "as_of must not be in the future")
    return value


class Freshness:
    """Waiting for a position and the ``meta`` of a read, over the process's ReadProgress."""

    def __init__(
        self, progress: ReadProgress, max_wait_s: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.progress = progress
        self.max_wait_s = max_wait_s
        self._clock = clock
        self._now_ms = -1  # many reads per millisecond share one ISO text of "now"
        self._now_text = ""

    @property
    def watermark(self) -> int:
        return self.progress.watermark

    def freshness_seconds(self) -> float:
        return self.progress.freshness_seconds()

    def catch_up(self) -> None:
        """Before reading a table the serving sink writes lazily (events, lines, products, users,
        payments, stock movements): write what it holds back."""
        self.progress.flush_serving()

    async def wait(self, after: ReadAfter | None) -> bool:
        """Honour ``after.min_position``: True once applied (or when none was asked), False when the
        bound passed and the caller allows a stale answer; otherwise raises NotYetApplied."""
        if after is None or after.min_position is None:
            return True
        position = after.min_position
        timeout = self.max_wait_s
        if after.timeout_ms is not None:
            timeout = min(timeout, max(0.0, after.timeout_ms / 1000))
        if await self.progress.wait_for_position(position, timeout):
            return True
        if after.allow_stale:
            return False
        applied = self.progress.watermark
        raise NotYetApplied(
            "position_not_yet_applied",
            f"read model has applied position {applied}, not yet {position}",
            {"as_of_position": applied, "min_position": position},
        )

    def now_iso(self) -> str:
        now = self._clock()
        ms = int(now * 1000)
        if ms != self._now_ms:
            self._now_text = datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z")
            self._now_ms = ms
        return self._now_text

    def meta(self, as_of: datetime | None, fresh: bool = True) -> dict[str, Any]:
        """``meta`` of a read answered now (``as_of`` None) or as of an instant."""
        meta: dict[str, Any] = {
            "as_of": iso(as_of) if as_of is not None else self.now_iso(),
            "is_historical": as_of is not None,
            "freshness_seconds": self.progress.freshness_seconds(),
            "as_of_position": self.progress.watermark,
        }
        if not fresh:
            meta["stale"] = True
        return meta

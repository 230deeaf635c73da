"""A Kafka consumer's lag per topic, from librdkafka's statistics (``statistics.interval.ms``).

librdkafka emits a JSON snapshot of the client every interval from the consumer's own ``poll``; the
callback keeps, per assigned partition, the high watermark and the group's committed offset. A scrape
reads the kept numbers: no broker request, nothing that can block on a dead broker.

Lag of a partition = high watermark - the group's committed offset: the messages a restart of the
group would read again (what ``kafka-consumer-groups.sh --describe`` shows as LAG). Before the group's
first commit on a partition, the messages not read yet stand in (:func:`partition_lag`). A partition
whose leader broker is not up, or a snapshot older than three intervals (the consumer stopped polling,
or is closed), has no lag: the series goes absent rather than show a number Kafka cannot confirm.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

STATS_INTERVAL_MS = 5000


class ConsumerLag:
    """Feed it a consumer's statistics (``config()`` into the consumer's config); ``lag()`` per topic."""

    def __init__(
        self, group: str, interval_ms: int = STATS_INTERVAL_MS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.group = group
        self.interval_ms = interval_ms
        self.clock = clock
        self._lock = threading.Lock()
        self._lag: dict[str, int] = {}
        self._at: float | None = None
        self.reports = 0  # statistics documents read

    def config(self) -> dict[str, Any]:
        return {"statistics.interval.ms": self.interval_ms, "stats_cb": self.on_stats}

    def on_stats(self, raw: str) -> None:
        """librdkafka's statistics callback (from the consumer's poll): keep the lag per topic."""
        try:
            lag = topic_lag(json.loads(raw))
        except Exception:  # never break the consumer's poll over a statistics document
            log.exception("kafka statistics of %s not read", self.group)
            return
        with self._lock:
            self._lag, self._at = lag, self.clock()
            self.reports += 1

    def clear(self) -> None:
        """The consumer is closed: it has no lag until a new one reports."""
        with self._lock:
            self._lag, self._at = {}, None

    def lag(self) -> dict[str, int]:
        """Messages behind per topic as of the last statistics, or nothing when those are stale."""
        with self._lock:
            if self._at is None or self.clock() - self._at > 3 * self.interval_ms / 1000:
                return {}
            return dict(self._lag)


def topic_lag(stats: dict[str, Any]) -> dict[str, int]:
    """Sum over the assigned partitions of each topic in one librdkafka statistics document."""
    up = {b.get("nodeid") for b in (stats.get("brokers") or {}).values() if b.get("state") == "UP"}
    out: dict[str, int] = {}
    for topic, t in (stats.get("topics") or {}).items():
        total, known = 0, False
        for p in (t.get("partitions") or {}).values():
            if p.get("partition", -1) < 0 or not p.get("desired") or p.get("leader") not in up:
                continue  # the "unassigned" pseudo partition, one not ours, or one Kafka cannot confirm
            lag = partition_lag(p)
            if lag is not None:
                total, known = total + lag, True
        if known:
            out[topic] = total
    return out


def partition_lag(p: dict[str, Any]) -> int | None:
    """High watermark minus the committed offset; before the first commit minus the offset read up to
    (the stored offset), and before anything was read minus the low watermark (AgentFlow's consumers
    start at the earliest offset)."""
    end = p.get("hi_offset")
    if not isinstance(end, int) or end < 0:
        return None
    for key in ("committed_offset", "stored_offset", "lo_offset"):
        offset = p.get(key)
        if isinstance(offset, int) and offset >= 0:
            return max(0, end - offset)
    return None

"""Every Prometheus metric AgentFlow records as it goes (definitions only; docs/observability.md).

They live in the process's default registry, so ``GET /metrics`` (services/api/routes/prometheus.py) and
the separate metrics port (``AGENTFLOW_METRICS_PORT``) expose them. Here, below ``services/``, so the
adapters that do the counted work (event store, dead letters, webhook delivery) can record them; the
services record the rest. Values read off live objects at scrape time (lag, watermarks, cache hits)
are services/observability.py's collector; the rate-limit counters are services/rate_limits.py's.

No label takes a tenant, an id or a raw path: every label's values are a small fixed set (a route
template, a command name, an outcome or error code, a pipeline stage).
"""

from __future__ import annotations

import threading
import weakref
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

# seconds: from a sub-millisecond read to a 30 s outlier
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# seconds from an event's commit to its row in the serving read model (the freshness objective is 2 s)
FRESHNESS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0,
                     300.0)  # fmt: skip
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000)



class BatchedHistogram(Collector):
    """A labelled histogram whose observations arrive in batches (``observe_many``), for the one on every
    request's path: the front door queues each answer and hands them over every few hundred requests or
    when a scrape comes (``add_pending``), instead of an ``observe`` per request (two locked increments
    and a bucket search in Python). Scraped as prometheus_client's Histogram is (_bucket, _count, _sum)."""

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...],
                 buckets: tuple[float, ...]) -> None:  # fmt: skip
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self.bounds = buckets
        self._les = [floatToGoString(b) for b in buckets] + ["+Inf"]
        self._lock = threading.Lock()
        self._series: dict[tuple[str, ...], list[Any]] = {}  # label values -> [bucket counts, sum]
        self._pending: list[weakref.WeakMethod[Callable[[], None]]] = []

    def add_pending(self, fold: Callable[[], None]) -> None:
        """A bound method that hands over queued observations; called before each scrape while its
        object lives."""
        self._pending[:] = [ref for ref in self._pending if ref() is not None]
        self._pending.append(weakref.WeakMethod(fold))  # type: ignore[arg-type]

    def observe_many(self, rows: Iterable[tuple[tuple[str, ...], float]]) -> None:
        bounds, series = self.bounds, self._series
        with self._lock:
            for labels, value in rows:
                entry = series.get(labels)
                if entry is None:
                    entry = series[labels] = [[0] * (len(bounds) + 1), 0.0]
                entry[0][bisect_left(bounds, value)] += 1
                entry[1] += value

    def collect(self) -> Iterator[Metric]:
        alive = []
        for ref in self._pending:
            fold = ref()
            if fold is not None:
                fold()
                alive.append(ref)
        self._pending[:] = alive
        family = HistogramMetricFamily(self.name, self.documentation, labels=list(self.labelnames))
        with self._lock:
            snapshot = [(labels, list(counts), total) for labels, (counts, total) in self._series.items()]
        for labels, counts, total in snapshot:
            cumulative, buckets = 0, []
            for le, n in zip(self._les, counts, strict=True):
                cumulative += n
                buckets.append((le, cumulative))
            family.add_metric(list(labels), buckets, total)
        yield family

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=list(self.labelnames))


HTTP_REQUEST_SECONDS = BatchedHistogram(
    "agentflow_http_request_duration_seconds",
    "Answered HTTP requests by method, route template and status class (2xx..5xx); health probes, "
    "streams and /metrics are not measured. _count is the request count, status=\"5xx\" the errors",
    ("method", "route", "status"),
    LATENCY_BUCKETS,
)
REGISTRY.register(HTTP_REQUEST_SECONDS)
COMMANDS = Counter(
    "agentflow_commands_total",
    "Commands answered over HTTP, by command and outcome: accepted, replayed (a repeated Idempotency-Key) "
    "or the error code of the refusal (validation_failed, version_conflict, a domain rule's code, ...)",
    ["command", "outcome"],
)
APPEND_SECONDS = Histogram(
    "agentflow_event_store_append_duration_seconds",
    "One append to the event store (the insert statement, every stream of the command)",
    buckets=LATENCY_BUCKETS,
)
APPEND_EVENTS = Histogram(
    "agentflow_event_store_append_events", "Events written by one append to the event store",
    buckets=BATCH_BUCKETS,
)
FRESHNESS_SECONDS = Histogram(
    "agentflow_freshness_seconds",
    "Per event: seconds from its commit in the event store to applied in the serving read model",
    buckets=FRESHNESS_BUCKETS,
)
DEAD_LETTERS = Counter(
    "agentflow_dead_letters_total", "Dead letters filed (new ones only), by pipeline and stage",
    ["pipeline", "stage"],
)
WEBHOOK_ATTEMPT_SECONDS = Histogram(
    "agentflow_webhook_attempt_duration_seconds",
    "Webhook delivery attempts by outcome (succeeded, failed, gone, timeout, error, blocked) and how long "
    "each took",
    ["outcome"],
    buckets=LATENCY_BUCKETS,
)
WEBHOOK_EXHAUSTED = Counter(
    "agentflow_webhook_deliveries_exhausted_total", "Webhook deliveries that gave up after the last attempt"
)
ALERT_EVALUATIONS = Counter(
    "agentflow_alert_evaluations_total",
    "Alert evaluation messages handled by this process, by outcome: evaluated, skipped (another worker "
    "held the rule, or it is gone or disabled), stale (the read models never reached the trigger's "
    "position), failed",
    ["outcome"],
)
ALERT_TRANSITIONS = Counter(
    "agentflow_alert_transitions_total", "Alert rule state transitions, by from and to state",
    ["from_state", "to_state"],
)

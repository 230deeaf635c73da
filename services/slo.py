"""How the app measures itself, at one observation point per measurement, for both the service level
objectives (readmodels/slo.py, ``GET /v1/slo``) and Prometheus (connectors/prometheus_metrics.py):

- ``RequestMeasure.record``: each answered request's method, route template, latency class
  (``route_class``), status and duration, from the app's front door (services/api/http_guard.py: one
  bare ASGI wrapper, no middleware stack);
- ``record_applied``: each event's commit -> applied lag, from the runtime's applied-events listeners.

Both feeds get the same numbers from the same call. They are two because they answer different
questions: the SloTracker keeps per-minute rings so ``/v1/slo`` can answer over rolling windows (24 h
objective, 1 h and 6 h burn rates, percentiles) from this process alone, which a cumulative Prometheus
histogram cannot; the histograms are cumulative per process, and Prometheus computes windows and sums
over processes from them (deploy/prometheus/rules.yml).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from connectors.prometheus_metrics import FRESHNESS_SECONDS, HTTP_REQUEST_SECONDS
from domain.events import RecordedEvent
from readmodels.slo import SloTracker

# label values for the request histogram: anything else is "other" (a client chooses the method)
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
_STATUS_CLASS = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}
UNMATCHED = "unmatched"  # no route matched (404) or the request was refused before routing


def route_class(method: str, path: str) -> str | None:
    """Which latency objective a request counts towards; None for streams and health probes."""
    if path.startswith("/v1/stream") or path.startswith("/v1/health") or path == "/metrics":
        return None
    if method == "POST":
        if path.startswith(("/v1/query", "/v1/batch")):
            return "query"
        if path.startswith("/v1/contracts"):
            return "read"
        return "command"
    return "read"


class RequestMeasure:
    """One answered request into the SLO tracker and the request histogram. The histogram's labelled
    child for each (method, route template, status) is bound once and kept (``.labels`` costs ~2 us);
    a request then costs a dict lookup and one ``observe``."""

    __slots__ = ("_children", "tracker")

    def __init__(self, tracker: SloTracker) -> None:
        self.tracker = tracker
        self._children: dict[tuple[str, str | None, int], Any] = {}

    def record(self, method: str, template: str | None, cls: str, status: int, seconds: float) -> None:
        child = self._children.get((method, template, status))
        if child is None:
            child = self._bind(method, template, status)
        child.observe(seconds)
        self.tracker.record_request(cls, status, seconds, command=cls == "command")

    def _bind(self, method: str, template: str | None, status: int) -> Any:
        known = method in _METHODS
        child = HTTP_REQUEST_SECONDS.labels(
            method if known else "other", template or UNMATCHED, _STATUS_CLASS.get(status // 100, "other")
        )
        if known:  # an unknown method is not kept: the key set stays bounded by the route table
            self._children[(method, template, status)] = child
        return child


def record_applied(tracker: SloTracker, events: Sequence[RecordedEvent], watermark: int = 0) -> None:
    """Applied events (a runtime applied-events listener, in the projector thread): each one's lag from
    its commit to now, computed once, into the tracker's freshness windows and the freshness histogram."""
    if not events:
        return
    now = tracker.clock()
    lags = [max(0.0, now - e.recorded_at.timestamp()) for e in events]
    tracker.record_freshness(lags, now)
    observe = FRESHNESS_SECONDS.observe
    for lag in lags:
        observe(lag)

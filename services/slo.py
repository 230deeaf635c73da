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

from collections import deque
from collections.abc import Sequence

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
    """Answered requests into the SLO tracker and the request histogram. A request only joins a queue
    (``record``: one append); every ``FOLD_EVERY`` requests, and before the tracker reports or Prometheus
    scrapes, the queue is handed to both in one batch each (``fold``). Per request that costs a fraction
    of what a locked tracker update and a histogram ``observe`` did, on the event loop every request
    waits for. The label values of each (method, route template, status) are worked out once and kept."""

    __slots__ = ("__weakref__", "_clock", "_labels", "_queue", "tracker")

    FOLD_EVERY = 256

    def __init__(self, tracker: SloTracker) -> None:
        self.tracker = tracker
        self._clock = tracker.clock
        # (method, template, class, status, seconds, when): appended by the event loop, taken by ``fold``
        # from whichever thread asks (deque append/popleft are atomic)
        self._queue: deque[tuple[str, str | None, str, int, float, float]] = deque()
        self._labels: dict[tuple[str, str | None, int], tuple[str, str, str]] = {}
        tracker.add_pending(self.fold)
        HTTP_REQUEST_SECONDS.add_pending(self.fold)

    def record(self, method: str, template: str | None, cls: str, status: int, seconds: float) -> None:
        queue = self._queue
        queue.append((method, template, cls, status, seconds, self._clock()))
        if len(queue) >= self.FOLD_EVERY:
            self.fold()

    def fold(self) -> None:
        """Hand the queued requests to the tracker and the histogram."""
        queue, rows = self._queue, []
        try:
            for _ in range(len(queue)):
                rows.append(queue.popleft())
        except IndexError:  # another thread folded them meanwhile
            pass
        if not rows:
            return
        self.tracker.record_requests(
            (cls, status, seconds, cls == "command", when) for _, _, cls, status, seconds, when in rows
        )
        known, values = self._labels, self._label_values
        HTTP_REQUEST_SECONDS.observe_many(
            (known.get((m, t, st)) or values(m, t, st), seconds) for m, t, _, st, seconds, _ in rows
        )

    def _label_values(self, method: str, template: str | None, status: int) -> tuple[str, str, str]:
        known = method in _METHODS
        status_class = _STATUS_CLASS.get(status // 100, "other")
        values = (method if known else "other", template or UNMATCHED, status_class)
        if known:  # an unknown method is not kept: the key set stays bounded by the route table
            self._labels[(method, template, status)] = values
        return values


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

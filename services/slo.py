"""How the HTTP app measures itself for the service level objectives (readmodels/slo.py): every request's
latency class (``route_class``), status and duration go to the SloTracker (``record_request``), from the
app's front door (services/api/http_guard.py: one bare ASGI wrapper, no middleware stack)."""

from __future__ import annotations

from readmodels.slo import SloTracker


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


def record_request(tracker: SloTracker, cls: str, status: int, seconds: float) -> None:
    """One answered HTTP request of latency class ``cls`` (``route_class``): its status and duration."""
    tracker.record_request(cls, status, seconds, command=cls == "command")

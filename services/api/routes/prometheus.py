"""``GET /metrics``: this process's Prometheus metrics in the text exposition format, no key needed (like
the health probes; it tells counts and latencies, no tenant's data). Not in the API schema: it is for
the scraper, not for clients. With ``AGENTFLOW_METRICS_PORT`` it is served on that port instead
(services/metrics_endpoint.py) and the API's port does not answer it. docs/observability.md."""

from __future__ import annotations

from litestar import Response, get
from prometheus_client import REGISTRY, generate_latest

from services.api.dependencies import PUBLIC_ROUTE

# the classic text format every Prometheus reads; Litestar appends "; charset=utf-8" to a text/ type
MEDIA_TYPE = "text/plain; version=0.0.4"


@get("/metrics", opt=PUBLIC_ROUTE, include_in_schema=False, sync_to_thread=True)
def metrics() -> Response[bytes]:
    """Blocking: the runtime gauges read the event store's head (services/runtime_gauges.py)."""
    return Response(generate_latest(REGISTRY), media_type=MEDIA_TYPE)


METRICS_ROUTES = [metrics]

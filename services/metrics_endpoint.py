"""``AGENTFLOW_METRICS_PORT``: this process's Prometheus metrics on a port of their own (prometheus-client's
own HTTP server, a daemon thread), for API processes that keep ``/metrics`` off the API port and for
``agentflow worker`` processes, which serve no API. docs/observability.md."""

from __future__ import annotations

import logging
from collections.abc import Callable

from prometheus_client import start_http_server

log = logging.getLogger("agentflow.metrics")


def serve_metrics(host: str, port: int) -> Callable[[], None]:
    """Start serving ``/metrics`` on ``host:port``; returns what stops it."""
    server, thread = start_http_server(port, addr=host)
    log.info("Prometheus metrics on http://%s:%d/metrics", host, port)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop

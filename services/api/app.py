"""The Litestar application over a built :class:`services.bootstrap.Container`.

No middleware stack (stacked middlewares held an earlier API to ~140 requests/s): authentication is a
dependency of each route that needs a tenant, and everything else a request passes is one bare ASGI
wrapper, the front door (http_guard.py: security headers, X-Request-ID, CORS, HSTS, the X-RateLimit-*
headers authentication left, the NUL guard of text_guard.py and the SLO measurement of services/slo.py).
Routes receive their dependencies by parameter name (services/api/dependencies.py); the OpenAPI 3.1
schema they describe is served at /schema/openapi.json (and checked in as docs/openapi.json).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from litestar import Litestar
from litestar.di import Provide
from litestar.exceptions import HTTPException, ValidationException
from litestar.logging import LoggingConfig

from connectors import tracing
from readmodels.errors import ReadError
from readmodels.slo import SloTracker
from services.api.dependencies import DbLimiter, providers
from services.api.errors import (
    ApiError,
    error_response,
    http_exception_response,
    internal_error_response,
    read_error_response,
    validation_error_response,
)
from services.api.http_guard import HttpGuard
from services.api.in_process import InProcess
from services.api.openapi import DOCS_PATHS, openapi_config, tidy_schema
from services.api.routes.alerts import ALERT_ROUTES
from services.api.routes.batch import BATCH_ROUTES
from services.api.routes.catalog import CATALOG_ROUTES
from services.api.routes.changelog import CHANGELOG_ROUTES
from services.api.routes.commands import COMMAND_ROUTES
from services.api.routes.contracts import CONTRACT_ROUTES
from services.api.routes.deadletters import DEADLETTER_ROUTES
from services.api.routes.entities import ENTITY_ROUTES
from services.api.routes.health import HEALTH_ROUTES
from services.api.routes.keys import KEY_ROUTES
from services.api.routes.lineage import LINEAGE_ROUTES
from services.api.routes.metrics import METRIC_ROUTES
from services.api.routes.prometheus import METRICS_ROUTES
from services.api.routes.query import QUERY_ROUTES
from services.api.routes.rebuilds import REBUILD_ROUTES
from services.api.routes.replay import REPLAY_ROUTES
from services.api.routes.search import SEARCH_ROUTES
from services.api.routes.secrets import SECRET_ROUTES
from services.api.routes.slo import SLO_ROUTES
from services.api.routes.sources import SOURCE_ROUTES
from services.api.routes.stream import STREAM_ROUTES
from services.api.routes.timeline import TIMELINE_ROUTES
from services.api.routes.webhooks import WEBHOOK_ROUTES
from services.api.routes.whoami import WHOAMI_ROUTES
from services.api.tracing import TracedHttp
from services.bootstrap import Container
from services.config import HttpSettings
from services.metrics_endpoint import serve_metrics


def create_app(container: Container, manage_runtime: bool = True) -> Litestar:
    """The HTTP app; ``manage_runtime`` starts and stops the runtime with the app (tests that drive
    the read models themselves pass False)."""
    runtime = container.runtime
    db_limiter = DbLimiter(container.settings.db_threads)
    in_process = InProcess()  # POST /v1/batch runs its items through the app's own routes
    metrics_port = container.settings.metrics_port  # /metrics on its own port, else on this app's
    stop_metrics: list[Callable[[], None]] = []

    async def on_startup(app: Litestar) -> None:
        runtime.bind_loop(asyncio.get_running_loop())
        container.hub.bind_loop(asyncio.get_running_loop())
        if manage_runtime:
            await asyncio.to_thread(runtime.start)
        if metrics_port is not None:
            stop_metrics.append(serve_metrics(container.settings.host, metrics_port))
        # start-up objects live forever: keep them out of the collector's full passes (~100 ms pauses)
        gc.collect()
        gc.freeze()

    async def on_shutdown(app: Litestar) -> None:
        for stop in stop_metrics:
            stop()
        if manage_runtime:
            await asyncio.to_thread(runtime.stop)

    app = Litestar(
        route_handlers=[
            *COMMAND_ROUTES,
            *METRIC_ROUTES,
            *ENTITY_ROUTES,
            *CATALOG_ROUTES,
            *WHOAMI_ROUTES,
            *HEALTH_ROUTES,
            *CONTRACT_ROUTES,
            *TIMELINE_ROUTES,
            *BATCH_ROUTES,
            *SEARCH_ROUTES,
            *LINEAGE_ROUTES,
            *CHANGELOG_ROUTES,
            *SLO_ROUTES,
            *STREAM_ROUTES,
            *QUERY_ROUTES,
            *WEBHOOK_ROUTES,
            *ALERT_ROUTES,
            *DEADLETTER_ROUTES,
            *REBUILD_ROUTES,
            *REPLAY_ROUTES,
            *SOURCE_ROUTES,
            *KEY_ROUTES,
            *SECRET_ROUTES,
            *(METRICS_ROUTES if metrics_port is None else []),
        ],
        dependencies={
            **providers(container, db_limiter),
            "in_process": Provide(lambda: in_process, use_cache=True, sync_to_thread=False),
        },
        exception_handlers={
            ApiError: error_response,
            ReadError: read_error_response,
            ValidationException: validation_error_response,
            HTTPException: http_exception_response,
            Exception: internal_error_response,
        },
        on_startup=[on_startup],
        on_shutdown=[on_shutdown],
        logging_config=LoggingConfig(log_exceptions="never", configure_root_logger=False),
        openapi_config=openapi_config(),
        # AGENTFLOW_MAX_BODY_BYTES, on Content-Length and on the bytes a chunked body streams; no route needs
        # more (a batch's items are bodies cut from the batch's own; declarations and rules are small)
        request_max_body_size=container.settings.http.max_body_bytes,
        debug=False,
    )
    tidy_schema(app)
    # batch items dispatch to the unwrapped handler (the batch itself passes the front door, and is measured)
    in_process.bind(app, app.asgi_handler)
    # the front door, one bare ASGI wrapper: text no store can hold (NUL in a path, query or JSON body) is
    # refused once, for every route; request latency and status go to the SLOs; every answer (the NUL
    # guard's own too) gets the security headers, X-Request-ID, CORS and the X-RateLimit-* headers
    inner = TracedHttp(app.asgi_handler) if tracing.active() else app.asgi_handler  # a span per request
    app.asgi_handler = HttpGuard(inner, container.settings.http, DOCS_PATHS, container.slo)
    logging.getLogger("agentflow").setLevel(logging.INFO)
    return app


def unbound_app() -> Litestar:
    """The app's routes and schema over nothing they serve from (nothing is built; requests would fail):
    for the schema document and the tests that walk the route table."""
    stub: Any = SimpleNamespace(
        runtime=None, settings=SimpleNamespace(db_threads=1, http=HttpSettings(), metrics_port=None),
        hub=None, slo=SloTracker(), authenticator=None,
        key_admin=None, rate_limits=None, search=None, stream_slots=None, event_feed=None, lineage=None,
        changelog=None, queries=None, command_service=None,
    )  # fmt: skip
    return create_app(stub, manage_runtime=False)


def openapi_document() -> dict[str, Any]:
    """The OpenAPI schema the app serves, without building anything it serves from (docs/openapi.json
    is this, written by ``python -m services.api.app``)."""
    return unbound_app().openapi_schema.to_schema()


if __name__ == "__main__":
    print(json.dumps(openapi_document(), indent=2, sort_keys=True))

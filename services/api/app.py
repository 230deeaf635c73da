"""The Litestar application: no middleware stack, auth resolved inside each handler."""

from __future__ import annotations

import asyncio
import gc
import logging

from litestar import Litestar
from litestar.exceptions import HTTPException
from litestar.logging import LoggingConfig

from services.api.admin_routes import ADMIN_ROUTES
from services.api.alert_routes import ALERT_ROUTES
from services.api.command_routes import COMMAND_ROUTES
from services.api.contract_routes import CONTRACT_ROUTES
from services.api.deadletter_routes import DEADLETTER_ROUTES
from services.api.errors import ApiError, error_response, http_exception_response, internal_error_response
from services.api.health_routes import HEALTH_ROUTES
from services.api.metric_routes import METRIC_ROUTES
from services.api.query_routes import QUERY_ROUTES
from services.api.read_routes import READ_ROUTES
from services.api.source_routes import SOURCE_ROUTES
from services.api.stream_routes import STREAM_ROUTES, stream_slots_from_env
from services.api.surface_routes import SURFACE_ROUTES
from services.api.timeline_routes import TIMELINE_ROUTES
from services.api.webhook_routes import WEBHOOK_ROUTES
from services.auth import ApiKeys
from services.event_stream import AppliedEventHub
from services.rate_limit import rate_limiter_from_env
from services.runtime import Runtime
from services.search_index import SearchIndex
from services.slo import LatencyRecorder, SloTracker, objectives_from_env


def create_app(runtime: Runtime, api_keys: ApiKeys, manage_runtime: bool = True) -> Litestar:
    # the read surface that follows applied events: SSE hub (position order), search index, SLOs
    hub = AppliedEventHub(previous_watermark=lambda: runtime.watermark)
    search_index = SearchIndex()
    hub.add_listener(search_index.apply)
    slo = SloTracker(objectives_from_env())
    runtime.applied_listeners.extend([hub.on_applied, slo.record_applied])

    async def on_startup(app: Litestar) -> None:
        runtime.bind_loop(asyncio.get_running_loop())
        hub.bind_loop(asyncio.get_running_loop())
        if manage_runtime:
            await asyncio.to_thread(runtime.start)
        # start-up objects live forever: keep them out of the collector's full passes (~100 ms pauses)
        gc.collect()
        gc.freeze()

    async def on_shutdown(app: Litestar) -> None:
        if manage_runtime:
            await asyncio.to_thread(runtime.stop)

    app = Litestar(
        route_handlers=[
            *COMMAND_ROUTES,
            *READ_ROUTES,
            *HEALTH_ROUTES,
            *CONTRACT_ROUTES,
            *METRIC_ROUTES,
            *TIMELINE_ROUTES,
            *SURFACE_ROUTES,
            *STREAM_ROUTES,
            *QUERY_ROUTES,
            *WEBHOOK_ROUTES,
            *ALERT_ROUTES,
            *DEADLETTER_ROUTES,
            *ADMIN_ROUTES,
            *SOURCE_ROUTES,
        ],
        exception_handlers={
            ApiError: error_response,
            HTTPException: http_exception_response,
            Exception: internal_error_response,
        },
        on_startup=[on_startup],
        on_shutdown=[on_shutdown],
        logging_config=LoggingConfig(log_exceptions="never", configure_root_logger=False),
        openapi_config=None,
        debug=False,
    )
    app.state.runtime = runtime
    app.state.event_hub = hub
    app.state.search_index = search_index
    app.state.slo = slo
    app.state.stream_slots = stream_slots_from_env()
    # request latency and status for the SLOs: a bare ASGI wrapper, no middleware stack; batch items
    # dispatch to the unwrapped handler (the batch itself is measured)
    app.state.inner_asgi = app.asgi_handler
    app.asgi_handler = LatencyRecorder(app.asgi_handler, slo)
    app.state.api_keys = api_keys
    app.state.rate_limiter = rate_limiter_from_env(runtime.settings.rate_limit_rpm)
    logging.getLogger("agentflow").setLevel(logging.INFO)
    return app

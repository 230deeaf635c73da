"""The Litestar application: no middleware stack, auth resolved inside each handler."""

from __future__ import annotations

import asyncio
import gc
import logging

from litestar import Litestar
from litestar.exceptions import HTTPException
from litestar.logging import LoggingConfig

from services.api.command_routes import COMMAND_ROUTES
from services.api.contract_routes import CONTRACT_ROUTES
from services.api.errors import ApiError, error_response, http_exception_response, internal_error_response
from services.api.health_routes import HEALTH_ROUTES
from services.api.metric_routes import METRIC_ROUTES
from services.api.query_routes import QUERY_ROUTES
from services.api.read_routes import READ_ROUTES
from services.auth import ApiKeys
from services.rate_limit import RateLimiter
from services.runtime import Runtime


def create_app(runtime: Runtime, api_keys: ApiKeys, manage_runtime: bool = True) -> Litestar:
    async def on_startup(app: Litestar) -> None:
        runtime.bind_loop(asyncio.get_running_loop())
        if manage_runtime:
            await asyncio.to_thread(runtime.start)
        # start-up objects live forever: keep them out of the collector's full passes (~100 ms pauses)
        gc.collect()
        gc.freeze()

    async def on_shutdown(app: Litestar) -> None:
        if manage_runtime:
            await asyncio.to_thread(runtime.stop)

    app = Litestar(
        route_handlers=[*COMMAND_ROUTES, *READ_ROUTES, *HEALTH_ROUTES, *CONTRACT_ROUTES, *METRIC_ROUTES, *QUERY_ROUTES],
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
    app.state.api_keys = api_keys
    rpm = runtime.settings.rate_limit_rpm
    app.state.rate_limiter = RateLimiter(rpm) if rpm else None
    logging.getLogger("agentflow").setLevel(logging.INFO)
    return app

"""What route handlers may ask for by parameter name (Litestar dependency injection).

Every dependency comes from the one :class:`services.bootstrap.Container` of the process; a route
declares e.g. ``tenant: str`` (the caller's tenant, authenticated and rate-limited) and ``store:
PostgresEventStore`` and receives them. No route reaches into ``app.state``.
"""

from __future__ import annotations

import uuid
from typing import Any

from anyio import CapacityLimiter
from litestar import Request
from litestar.di import Provide

from services.api.errors import ApiError
from services.bootstrap import Container
from services.rate_limit import retry_after_header


def authenticate(request: Request[Any, Any, Any], container: Container) -> str:
    """The caller's tenant, from X-API-Key; also applies the per-key rate limit when one is set."""
    key = request.headers.get("x-api-key")
    tenant = container.api_keys.tenant_for(key)
    if tenant is None:
        raise ApiError(401, "unauthorized", "missing or invalid X-API-Key")
    limiter = container.rate_limiter
    if limiter is not None and (wait := limiter.acquire(key or "")):
        raise ApiError(
            429,
            "rate_limited",
            f"more than {int(limiter.capacity)} requests a minute for this API key",
            {"retry_after_seconds": round(wait, 3)},
            headers={"Retry-After": retry_after_header(wait)},
        )
    return tenant


def correlation_id(request: Request[Any, Any, Any]) -> str:
    """X-Correlation-ID, or a new one; error responses of the request carry the same."""
    cid = request.headers.get("x-correlation-id") or str(uuid.uuid4())
    request.scope.setdefault("state", {})["correlation_id"] = cid  # type: ignore[typeddict-item]
    return cid


class DbLimiter:
    """The worker threads for database work: as many as the engine pools connections for
    (connectors.database.make_service_engine), so commands never open overflow connections. Made on
    first use: an anyio limiter belongs to the running event loop."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._limiter: CapacityLimiter | None = None

    def __call__(self) -> CapacityLimiter:
        if self._limiter is None:
            self._limiter = CapacityLimiter(self.threads)
        return self._limiter


PARTS = ("settings", "store", "runtime", "read_cache", "clickhouse", "dead_letters", "webhook_store", "hub",
         "search", "slo", "stream_slots", "freshness", "metric_queries", "entity_queries", "command_service")


def providers(container: Container, db_limiter: DbLimiter) -> dict[str, Provide]:
    """The app-level dependencies: the container's parts, each resolved once (``use_cache``)."""

    def part(name: str) -> Provide:
        return Provide(lambda: getattr(container, name), use_cache=True, sync_to_thread=False)

    return {
        "container": Provide(lambda: container, use_cache=True, sync_to_thread=False),
        "tenant": Provide(authenticate, sync_to_thread=False),
        "correlation_id": Provide(correlation_id, sync_to_thread=False),
        "db_limiter": Provide(db_limiter, sync_to_thread=False),
        **{name: part(name) for name in PARTS},
    }

"""What route handlers may ask for by parameter name (Litestar dependency injection).

Every dependency comes from the one :class:`services.bootstrap.Container` of the process; a route
declares e.g. ``tenant: str`` (the caller's tenant, authenticated and rate-limited) and ``store:
PostgresEventStore`` and receives them. No route reaches into ``app.state``.
"""

from __future__ import annotations

import secrets
from typing import Any

from anyio import CapacityLimiter
from litestar import Request
from litestar.di import Provide

from services.api.consistency import read_after
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


def authorize_admin(request: Request[Any, Any, Any], container: Container, tenant: str) -> str:
    """The caller's tenant, when its key may run admin actions: every key, unless
    ``AGENTFLOW_ADMIN_API_KEYS`` names the ones that may (403 for the others)."""
    allowed = container.settings.admin_api_keys
    key = request.headers.get("x-api-key") or ""
    if allowed and not any(secrets.compare_digest(key, k) for k in allowed):
        raise ApiError(403, "forbidden", "this API key may not run admin actions")
    return tenant


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
         "search", "slo", "stream_slots", "webhook_subscriptions", "alert_rules", "dead_letter_replay",
         "kafka_replay", "health", "event_feed", "lineage", "changelog", "queries")


def providers(container: Container, db_limiter: DbLimiter) -> dict[str, Provide]:
    """The app-level dependencies: the container's parts, each resolved once (``use_cache``)."""

    def part(name: str) -> Provide:
        return Provide(lambda: getattr(container, name), use_cache=True, sync_to_thread=False)

    return {
        "container": Provide(lambda: container, use_cache=True, sync_to_thread=False),
        "tenant": Provide(authenticate, sync_to_thread=False),
        "admin": Provide(authorize_admin, sync_to_thread=False),
        "db_limiter": Provide(db_limiter, sync_to_thread=False),
        # min_position / timeout_ms / allow_stale of a read (services/api/consistency.py)
        "read_after": Provide(read_after, sync_to_thread=False),
        **{name: part(name) for name in PARTS},
        # the runtime's: rebuilds of the read models it projects; the legacy sources once started
        "rebuilds": Provide(lambda: container.runtime.rebuilds, use_cache=True, sync_to_thread=False),
        "legacy": Provide(lambda: container.runtime.legacy, sync_to_thread=False),
    }

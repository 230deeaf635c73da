"""What route handlers may ask for by parameter name (Litestar dependency injection).

Every dependency comes from the one :class:`services.bootstrap.Container` of the process; a route
declares e.g. ``tenant: NamedDependency[str]`` (the caller's tenant, authenticated and rate-limited) and
``store: NamedDependency[PostgresEventStore]`` and receives them (Litestar's explicit marker: inferred
dependencies stop working in Litestar 3.0). No route reaches into ``app.state``.

The use cases are handed out to authenticated callers only, as one dependency that authenticates:
``reads`` (the caller's tenant with the read side's query services) and ``commands`` (the caller's tenant
with the write side's use case). One, because Litestar resolves a batch of independent dependencies (say
``tenant`` and a service) in an anyio task group, which costs more than a cached read itself (~150-300 µs
on this machine), and each resolved dependency ~5 µs: the hot reads must not get slower.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from anyio import CapacityLimiter, to_thread
from litestar import Request
from litestar.di import NamedDependency, Provide

from commands.bus import CommandResult
from commands.service import CommandService
from readmodels.entity_queries import EntityQueries
from readmodels.freshness import Freshness
from readmodels.metric_queries import MetricQueries
from services.api.consistency import read_after
from services.api.errors import ApiError
from services.bootstrap import Container
from services.rate_limit import retry_after_header


def _api_key(request: Request[Any, Any, Any]) -> str | None:
    """X-API-Key, read from the raw ASGI headers (names are lower-case there): every authenticated
    request pays this, and building Litestar's Headers costs several microseconds."""
    for name, value in request.scope["headers"]:
        if name == b"x-api-key":
            return value.decode("latin-1")
    return None


def authenticate(request: Request[Any, Any, Any], container: Container) -> str:
    """The caller's tenant, from X-API-Key; also applies the per-key rate limit when one is set."""
    key = _api_key(request)
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


def authorize_admin(
    request: Request[Any, Any, Any], container: NamedDependency[Container], tenant: NamedDependency[str]
) -> str:
    """The caller's tenant, when its key may run admin actions: every key, unless
    ``AGENTFLOW_ADMIN_API_KEYS`` names the ones that may (403 for the others)."""
    allowed = container.settings.admin_api_keys
    key = request.headers.get("x-api-key") or ""
    if allowed and not any(secrets.compare_digest(key, k) for k in allowed):
        raise ApiError(403, "forbidden", "this API key may not run admin actions")
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


class Reads:
    """An authenticated caller's read side: its tenant and the query services (metrics, entities, and
    waiting for a position / the meta of a read for the other reads)."""

    __slots__ = ("entities", "freshness", "metrics", "tenant")

    def __init__(
        self, tenant: str, metrics: MetricQueries, entities: EntityQueries, freshness: Freshness
    ) -> None:
        self.tenant = tenant
        self.metrics = metrics
        self.entities = entities
        self.freshness = freshness


class Commands:
    """An authenticated caller's write side: its tenant and the command use case
    (commands.service.CommandService), run in the database threads."""

    __slots__ = ("db_limiter", "service", "tenant")

    def __init__(self, tenant: str, service: CommandService, db_limiter: DbLimiter) -> None:
        self.tenant = tenant
        self.service = service
        self.db_limiter = db_limiter

    async def submit(
        self,
        name: str,
        entity_id: str | None,
        payload: dict[str, Any],
        metadata: dict[str, Any],
        if_match: int | None,
        idempotency_key: str | None,
    ) -> CommandResult:
        return await to_thread.run_sync(
            self.service.submit, self.tenant, name, entity_id, payload, metadata, if_match, idempotency_key,
            limiter=self.db_limiter(),
        )  # fmt: skip


PARTS = ("settings", "store", "runtime", "read_cache", "clickhouse", "dead_letters", "webhook_store", "hub",
         "search", "slo", "stream_slots", "webhook_subscriptions", "alert_rules", "dead_letter_replay",
         "kafka_replay", "health", "event_feed", "lineage", "changelog", "queries", "stored_secrets")


def providers(container: Container, db_limiter: DbLimiter) -> dict[str, Provide]:
    """The app-level dependencies: the container's parts, each resolved once (``use_cache``), and the use
    cases, for authenticated callers."""

    def part(name: str) -> Provide:
        return Provide(lambda: getattr(container, name), use_cache=True, sync_to_thread=False)

    def tenant(request: Request[Any, Any, Any]) -> str:
        return authenticate(request, container)

    def reads(request: Request[Any, Any, Any]) -> Reads:
        c = container
        return Reads(authenticate(request, c), c.metric_queries, c.entity_queries, c.freshness)

    def commands(request: Request[Any, Any, Any]) -> Commands:
        return Commands(authenticate(request, container), container.command_service, db_limiter)

    return {
        "container": Provide(lambda: container, use_cache=True, sync_to_thread=False),
        "tenant": Provide(tenant, sync_to_thread=False),
        "admin": Provide(authorize_admin, sync_to_thread=False),
        "db_limiter": Provide(db_limiter, sync_to_thread=False),
        # min_position / timeout_ms / allow_stale of a read (services/api/consistency.py)
        "read_after": Provide(read_after, sync_to_thread=False),
        **{name: part(name) for name in PARTS},
        # the runtime's: rebuilds of the read models it projects; the legacy sources once started
        "rebuilds": Provide(lambda: container.runtime.rebuilds, use_cache=True, sync_to_thread=False),
        "legacy": Provide(lambda: container.runtime.legacy, sync_to_thread=False),
        "reads": Provide(reads, sync_to_thread=False),
        "commands": Provide(commands, sync_to_thread=False),
    }

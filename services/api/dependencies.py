"""What route handlers may ask for by parameter name (Litestar dependency injection).

Every dependency comes from the one :class:`services.bootstrap.Container` of the process; a route
declares e.g. ``tenant: NamedDependency[str]`` (the caller's tenant, authenticated and rate-limited) and
``store: NamedDependency[PostgresEventStore]`` and receives them (Litestar's explicit marker: inferred
dependencies stop working in Litestar 3.0). No route reaches into ``app.state``.

Every route declares the scope it needs (``opt=READ``, ``WRITE``, ``ADMIN``, ``OPERATOR`` or
``PUBLIC_ROUTE``); the dependencies that authenticate -- ``principal`` (the caller: tenant and
scopes), ``tenant``, ``reads``, ``commands`` -- refuse a key without it (403), and a route that declares
nothing refuses every key. The use cases are handed out to authenticated callers only, as one
dependency that authenticates: ``reads`` (the caller's tenant with the read side's query services) and
``commands`` (the caller's tenant with the write side's use case). One, because Litestar resolves a
batch of independent dependencies (say ``tenant`` and a service) in an anyio task group, which costs
more than a cached read itself (~150-300 µs on this machine), and each resolved dependency ~5 µs: the
hot reads must not get slower.
"""

from __future__ import annotations

import functools
import inspect
import logging
import uuid
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

from anyio import CapacityLimiter, to_thread
from litestar import Request
from litestar.di import Provide

from commands.bus import CommandResult
from commands.service import CommandService
from connectors import tracing
from readmodels.api_keys import ADMIN as ADMIN_SCOPE
from readmodels.api_keys import OPERATOR as OPERATOR_SCOPE
from readmodels.api_keys import PUBLIC, Miss, Principal
from readmodels.api_keys import READ as READ_SCOPE
from readmodels.api_keys import WRITE as WRITE_SCOPE
from readmodels.entity_queries import EntityQueries
from readmodels.freshness import Freshness
from readmodels.metric_queries import MetricQueries
from services.api.consistency import read_after
from services.api.errors import ApiError
from services.api.http_guard import RATE_LIMIT_HEADERS
from services.bootstrap import Container
from services.rate_limits import AUTH_FAILURES, READ_BUDGET, WRITE_BUDGET, retry_after_header

log = logging.getLogger("agentflow.auth")


def _api_key(request: Request[Any, Any, Any]) -> str | None:
    """X-API-Key, read from the raw ASGI headers (names are lower-case there): every authenticated
    request pays this, and building Litestar's Headers costs several microseconds."""
    for name, value in request.scope["headers"]:
        if name == b"x-api-key":
            return value.decode("latin-1")
    return None


# What a route declares it needs (``opt=READ``...): the authenticating dependencies below refuse a key
# without that scope, and a route that declares nothing (403 for every key; tests/unit/test_route_scopes.py
# fails the build first). Health probes and the schema are the only public routes.
PUBLIC_ROUTE: dict[str, Any] = {"scope": PUBLIC}
READ: dict[str, Any] = {"scope": READ_SCOPE}
WRITE: dict[str, Any] = {"scope": WRITE_SCOPE}
ADMIN: dict[str, Any] = {"scope": ADMIN_SCOPE}
OPERATOR: dict[str, Any] = {"scope": OPERATOR_SCOPE}
# the dependencies that authenticate and authorize (a non-public route takes one of them)
AUTHENTICATING = ("principal", "tenant", "reads", "commands")


class VerifyLimiter:
    """Threads for checking a stored key the cache does not hold (one SELECT, the first time one argon2
    verification): two, so a flood of wrong keys cannot take the database threads. Made on first use."""

    def __init__(self, threads: int = 2) -> None:
        self.threads = threads
        self._limiter: CapacityLimiter | None = None

    def __call__(self) -> CapacityLimiter:
        if self._limiter is None:
            self._limiter = CapacityLimiter(self.threads)
        return self._limiter


def client_address(request: Request[Any, Any, Any]) -> str:
    """The peer's address (uvicorn runs without proxy headers: the address of whoever connected)."""
    client = request.scope.get("client")
    return client[0] if client else "unknown"


def _throttled(request: Request[Any, Any, Any], container: Container) -> None:
    """429 when the client address has sent too many refused keys within the last minute."""
    wait = container.rate_limits.auth_throttled(client_address(request))
    if wait:
        AUTH_FAILURES.labels("throttled").inc()
        raise ApiError(429, "auth_throttled", "too many requests with a missing or invalid API key from this "
                       "address; wait before trying again", {"retry_after_seconds": round(wait, 3)},
                       headers={"Retry-After": retry_after_header(wait)})  # fmt: skip


def refuse(request: Request[Any, Any, Any], container: Container, key: str | None) -> NoReturn:
    """401 for a missing or invalid key, counted against the client address (429 once it sent too many)."""
    _throttled(request, container)
    address = client_address(request)
    # counted (agentflow_auth_failures_total), not logged: anyone could fill the log with them
    container.rate_limits.auth_failed(address, "missing" if not key else "invalid")
    raise ApiError(401, "unauthorized", "missing or invalid X-API-Key")


def authorize(request: Request[Any, Any, Any], container: Container, key: str | None,
              found: Principal | None) -> Principal:  # fmt: skip
    """``found`` (the key's principal, or None) when it has the scope the route declares and budget left:
    401 without a valid key, 429 past the key's budget (the read budget for read routes, the write budget
    for the others; the answer carries the budget's X-RateLimit-* headers either way), 403 without the
    scope (and for every key on a route that declares none)."""
    if found is None:
        refuse(request, container, key)
    state = request.scope.setdefault("state", {})  # type: ignore[typeddict-item]
    state["tenant"] = found.tenant  # the log lines of this request carry it (services/logs.py)
    required = request.scope["route_handler"].opt.get("scope")
    budget = READ_BUDGET if required == READ_SCOPE else WRITE_BUDGET
    verdict = container.rate_limits.take(budget, found.bucket)
    if verdict is not None:
        # added to the answer, whatever it turns out to be, by services/api/http_guard.py
        state[RATE_LIMIT_HEADERS] = verdict.headers()
        if not verdict.allowed:
            raise ApiError(
                429,
                "rate_limited",
                f"more than {verdict.limit} {budget} requests a minute for this API key",
                {"budget": budget, "limit": verdict.limit,
                 "retry_after_seconds": round(verdict.retry_after_s, 3)},  # fmt: skip
                headers={"Retry-After": retry_after_header(verdict.retry_after_s)},
            )
    if required not in found.grants and required != PUBLIC:
        log.info("refused %s %s to %s (tenant %s): needs scope %s", request.scope["method"],
                 request.scope["path"], found.label, found.tenant, required)  # fmt: skip
        message = (f"this API key lacks the {required} scope this route needs" if required is not None
                   else "this route declares no scope: it refuses every key")  # fmt: skip
        details = {"required_scope": required, "key_scopes": sorted(found.scopes)}
        raise ApiError(403, "forbidden", message, details)
    return found


def authenticate_cached(request: Request[Any, Any, Any], container: Container) -> Principal | None:
    """The hot path: the authorized caller when this process's cache can tell (an environment key, or a
    stored key verified within the last second; no I/O, no hash), else None (``authenticate`` asks the
    key store). Raises 401/403/429 as ``authorize``."""
    key = _api_key(request)
    found = container.authenticator.cached(key)
    if found.__class__ is Miss:
        return None
    return authorize(request, container, key, found)  # type: ignore[arg-type]


async def authenticate(
    request: Request[Any, Any, Any], container: Container, verify_limiter: VerifyLimiter
) -> Principal:
    """The caller, from X-API-Key, when its key has the scope the route declares (``authorize``): from
    the cache, or (a stored key this process has not checked within the last second) from the key store
    in a worker thread -- one SELECT, and one argon2 verification the first time. An address that sent
    too many refused keys gets 429 before any of that."""
    cached = authenticate_cached(request, container)
    if cached is not None:
        return cached
    key = _api_key(request)
    assert key is not None
    _throttled(request, container)
    try:
        found = await to_thread.run_sync(container.authenticator.verify, key, limiter=verify_limiter())
    except Exception as exc:  # the key store is unreachable: no answer either way
        log.warning("API key check failed: %s", type(exc).__name__)
        raise ApiError(503, "auth_unavailable", "API keys cannot be checked right now",
                       headers={"Retry-After": "1"}) from exc  # fmt: skip
    return authorize(request, container, key, found)


def own_tenant(principal: Principal, tenant: str | None, what: str) -> str:
    """The tenant an admin action acts on: the caller's own, or (operator keys only) the one asked for;
    403 ``cross_tenant`` otherwise."""
    if tenant is None or tenant == principal.tenant:
        return principal.tenant
    if not principal.operator:
        raise ApiError(403, "cross_tenant", f"this API key may {what} of its own tenant only",
                       {"tenant": principal.tenant})  # fmt: skip
    return tenant


def correlation_id(request: Request[Any, Any, Any]) -> str:
    """X-Correlation-ID, else the request id (X-Request-ID of the answer, services/api/http_guard.py), else
    a new one; error responses of the request carry the same."""
    state = request.scope.setdefault("state", {})  # type: ignore[typeddict-item]
    cid = request.headers.get("x-correlation-id") or state.get("request_id") or str(uuid.uuid4())
    state["correlation_id"] = cid
    return str(cid)


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
        # the worker thread runs in a copy of this context: the command's span is current there
        with tracing.span(f"command {name}", {"agentflow.tenant": self.tenant, "agentflow.command": name}):
            return await to_thread.run_sync(
                self.service.submit, self.tenant, name, entity_id, payload, metadata, if_match,
                idempotency_key, limiter=self.db_limiter(),
            )  # fmt: skip


T = TypeVar("T")


def takes_reads(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """For the hot reads (a metric, a series, an entity): ``fn`` declares ``reads: Reads`` as if it were the
    ``reads`` dependency, and gets exactly what that dependency gives (the same function of
    ``providers``, called with the request: the caller authenticated, authorized for the route's declared
    scope and counted against its read budget), without Litestar resolving a dependency, which costs a
    read ~10 us of the event loop's time (an exit stack, a signature model per dependency). The handler
    Litestar sees takes the request in place of ``reads``; tests/unit/test_route_scopes.py counts it as
    taking ``reads`` (``AUTHENTICATES``)."""
    signature = inspect.signature(fn)
    params = [p for name, p in signature.parameters.items() if name != "reads"]
    if len(params) == len(signature.parameters):
        raise TypeError(f"{fn.__qualname__} takes no reads parameter")
    request = inspect.Parameter("request", inspect.Parameter.KEYWORD_ONLY, annotation=Request)

    @functools.wraps(fn)
    async def handler(request: Request[Any, Any, Any], **kwargs: Any) -> T:
        route = request.scope["route_handler"]
        reads = _READS.get(route)
        if reads is None:  # resolve_dependencies costs ~5 us a call: once per route handler (and app)
            reads = _READS[route] = route.resolve_dependencies()["reads"].dependency
        return await fn(await reads(request), **kwargs)

    handler.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[request, *(p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params)]
    )
    annotations = {k: v for k, v in fn.__annotations__.items() if k != "reads"}
    handler.__annotations__ = {**annotations, "request": Request}
    setattr(handler, AUTHENTICATES, "reads")
    return handler


# set on a handler by ``takes_reads``: the authenticating dependency it calls itself
AUTHENTICATES = "__agentflow_authenticates__"
# route handler -> its app's ``reads`` dependency (weak: tests build many apps)
_READS: weakref.WeakKeyDictionary[Any, Callable[..., Awaitable[Reads]]] = weakref.WeakKeyDictionary()


PARTS = ("settings", "store", "runtime", "read_cache", "clickhouse", "dead_letters", "webhook_store", "hub",
         "search", "slo", "stream_slots", "webhook_subscriptions", "alert_rules", "dead_letter_replay",
         "kafka_replay", "health", "event_feed", "lineage", "changelog", "queries", "key_admin",
         "stored_secrets")


def providers(container: Container, db_limiter: DbLimiter) -> dict[str, Provide]:
    """The app-level dependencies: the container's parts, each resolved once (``use_cache``), and the use
    cases, for authenticated callers (each checks the scope the route declares)."""
    verifying = VerifyLimiter()

    def part(name: str) -> Provide:
        return Provide(lambda: getattr(container, name), use_cache=True, sync_to_thread=False)

    async def principal(request: Request[Any, Any, Any]) -> Principal:
        return authenticate_cached(request, container) or await authenticate(request, container, verifying)

    async def tenant(request: Request[Any, Any, Any]) -> str:
        caller = authenticate_cached(request, container) or await authenticate(request, container, verifying)
        return caller.tenant

    async def reads(request: Request[Any, Any, Any]) -> Reads:
        c = container
        caller = authenticate_cached(request, c) or await authenticate(request, c, verifying)
        return Reads(caller.tenant, c.metric_queries, c.entity_queries, c.freshness)

    async def commands(request: Request[Any, Any, Any]) -> Commands:
        caller = authenticate_cached(request, container) or await authenticate(request, container, verifying)
        return Commands(caller.tenant, container.command_service, db_limiter)

    return {
        "container": Provide(lambda: container, use_cache=True, sync_to_thread=False),
        "principal": Provide(principal),
        "tenant": Provide(tenant),
        "db_limiter": Provide(db_limiter, sync_to_thread=False),
        # min_position / timeout_ms / allow_stale of a read (services/api/consistency.py)
        "read_after": Provide(read_after, sync_to_thread=False),
        **{name: part(name) for name in PARTS},
        # the runtime's: rebuilds of the read models it projects; the legacy sources once started
        "rebuilds": Provide(lambda: container.runtime.rebuilds, use_cache=True, sync_to_thread=False),
        "legacy": Provide(lambda: container.runtime.legacy, sync_to_thread=False),
        "reads": Provide(reads),
        "commands": Provide(commands),
    }

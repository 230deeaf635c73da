"""Deny by default: every route of the app declares the scope it needs (``opt={"scope": ...}``) and takes a
dependency that checks it; the health probes and the schema are the only public routes. A new route that
forgets either fails here (and would answer 403 to every key at run time)."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from litestar import Litestar, Request, get
from litestar.di import NamedDependency, Provide
from litestar.handlers import HTTPRouteHandler
from litestar.testing import TestClient

from connectors.rate_windows import MemoryWindows
from readmodels.api_keys import PUBLIC, SCOPES, Authenticator, Principal, env_principals
from services.api.app import unbound_app
from services.api.dependencies import ADMIN, AUTHENTICATES, AUTHENTICATING, READ, VerifyLimiter, authenticate
from services.api.errors import ApiError, error_response
from services.rate_limits import RateLimits

PUBLIC_PATHS = {"/v1/health", "/v1/health/live", "/v1/health/ready", "/metrics"}  # /metrics: the scraper
# requests that change nothing although they are not GETs (a read scope is right for them)
READS_BY_POST = {"/v1/query", "/v1/query/explain", "/v1/batch", "/v1/contracts/{name:str}/validate"}


def route_table(app: Litestar) -> Iterator[tuple[str, str, HTTPRouteHandler]]:
    """(method, path, handler) of every route, but Litestar's automatic OPTIONS answers and the schema
    pages (/schema...), which carry no data."""
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            methods = set(handler.http_methods)
            if methods == {"OPTIONS"} or route.path.startswith("/schema"):
                continue
            for method in sorted(methods):
                yield method, route.path, handler


APP = unbound_app()
ROUTES = sorted(((m, p, h) for m, p, h in route_table(APP)), key=lambda r: (r[1], r[0]))


def _uses(handler: HTTPRouteHandler) -> set[str]:
    """Every dependency the handler's parameters reach, transitively."""
    provided = handler.resolve_dependencies()
    seen: set[str] = set()
    todo = list(handler.parsed_fn_signature.parameters)
    if (called := getattr(handler.fn, AUTHENTICATES, None)) is not None:  # takes_reads: calls it itself
        todo.append(called)
    while todo:
        name = todo.pop()
        if name in seen or name not in provided:
            continue
        seen.add(name)
        todo.extend(inspect.signature(provided[name].dependency).parameters)
    return seen


def test_the_route_table_is_walked() -> None:
    paths = {p for _, p, _ in ROUTES}
    assert len(ROUTES) > 60 and {"/v1/admin/keys", "/v1/orders", "/v1/metrics/{metric_name:str}"} <= paths


@pytest.mark.parametrize(("method", "path", "handler"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_every_route_declares_its_scope(method: str, path: str, handler: HTTPRouteHandler) -> None:
    scope: Any = handler.opt.get("scope")
    assert scope in (*SCOPES, PUBLIC), f"{method} {path} declares no scope (opt=READ/WRITE/ADMIN/OPERATOR)"
    if scope == PUBLIC:
        assert path in PUBLIC_PATHS, f"{method} {path} is public; only the health probes and /metrics may be"
        return
    assert path not in PUBLIC_PATHS
    assert _uses(handler) & set(AUTHENTICATING), f"{method} {path} takes none of {AUTHENTICATING}"
    if path.startswith("/v1/admin/"):
        assert scope in ("admin", "operator"), f"{method} {path} is an admin route with scope {scope}"
    if method != "GET" and scope == "read":
        assert path in READS_BY_POST, f"{method} {path} changes something: it needs write or more"


def test_a_route_that_declares_nothing_refuses_every_key() -> None:
    """At run time too: the authenticating dependencies refuse a key on a route without a declaration,
    and a key without the declared scope (environment keys only here: no store)."""
    container: Any = SimpleNamespace(
        authenticator=Authenticator(env_principals({"k": "t", "boss": "t"}, admin={"boss"}), None, None),
        rate_limits=RateLimits(MemoryWindows(), read_rpm=0, write_rpm=0, auth_failures=0),
    )
    limiter = VerifyLimiter()

    async def principal(request: Request[Any, Any, Any]) -> Principal:
        return await authenticate(request, container, limiter)

    @get("/undeclared", sync_to_thread=False)
    def undeclared(principal: NamedDependency[Principal]) -> str:
        return principal.tenant

    @get("/read", opt=READ, sync_to_thread=False)
    def read(principal: NamedDependency[Principal]) -> str:
        return principal.tenant

    @get("/admin", opt=ADMIN, sync_to_thread=False)
    def admin(principal: NamedDependency[Principal]) -> str:
        return principal.tenant

    app = Litestar([undeclared, read, admin], dependencies={"principal": Provide(principal)},
                   exception_handlers={ApiError: error_response})  # fmt: skip
    with TestClient(app) as c:
        for key in ("k", "boss"):
            r = c.get("/undeclared", headers={"X-API-Key": key})
            assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
            assert c.get("/read", headers={"X-API-Key": key}).text == "t"
        assert c.get("/read", headers={"X-API-Key": "nope"}).status_code == 401
        assert c.get("/read").status_code == 401
        assert c.get("/admin", headers={"X-API-Key": "k"}).status_code == 403
        assert c.get("/admin", headers={"X-API-Key": "boss"}).text == "t"


def _struct_fields(annotation: Any, seen: set[type] | None = None) -> set[str]:
    """The JSON names of every msgspec Struct field reachable from ``annotation``."""
    import typing

    import msgspec

    seen = set() if seen is None else seen
    out: set[str] = set()
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        if annotation in seen:
            return out
        seen.add(annotation)
        info = msgspec.inspect.type_info(annotation)
        for f in info.fields:  # type: ignore[attr-defined]
            out.add(f.encode_name)
        for hint in typing.get_type_hints(annotation, include_extras=True).values():
            out |= _struct_fields(hint, seen)
        return out
    for arg in typing.get_args(annotation):
        out |= _struct_fields(arg, seen)
    return out


@pytest.mark.parametrize(("method", "path", "handler"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_no_body_field_is_named_like_a_dependency(method: str, path: str, handler: HTTPRouteHandler) -> None:
    """Litestar reports a body field's validation error under the field's name, and turns an error whose
    name is a dependency's into a 500: ``{"tenant": {}}`` would be a server error, not a 422."""
    data = handler.parsed_fn_signature.parameters.get("data")
    if data is None:
        return
    clash = _struct_fields(data.annotation) & set(handler.resolve_dependencies())
    assert not clash, f"{method} {path}: body fields {clash} are named like dependencies"

"""``/v1/admin/sources``: legacy CDC sources (services/legacy_sources.py) -- add, list, status, remove.

Admin action. The body of a POST is the source declaration as JSON (connectors/legacy/declaration.py;
``agentflow sources add FILE`` sends the YAML file's content); ``?replace=true`` replaces an existing
declaration of the same name. A source document is its declaration (connection redacted) with its
capture status: state, counters, last position, lag, errors.

Tenancy: a source belongs to the tenants its rows feed (``tenant``, or the values of ``tenants``). An
admin key sees and removes its own tenant's sources only (another's: 404) and may declare a source
only for its own tenant (403 ``cross_tenant``); an ``operator`` key acts on every source. Source names
are one namespace: a name another tenant uses answers 409 ``source_exists`` and is never replaced.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import delete, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter, QueryParameter

from connectors.legacy.declaration import SourceSpecError
from connectors.legacy.registry import SourceExists, SourceNotFound
from readmodels.api_keys import Principal
from services.api.blocking import in_thread
from services.api.dependencies import ADMIN
from services.api.errors import ApiError
from services.api.openapi import errors
from services.legacy_sources import LegacySources

SourceName = Annotated[str, PathParameter(description="a declared source's name")]
# a declaration (name, kind, connection, tables, ...) with its capture status (state, records, applied,
# dead_letters, events, last_position, lag_seconds, last_error, ...): its fields follow the source kind
SourceDoc = dict[str, Any]


class SourceList(msgspec.Struct):
    sources: list[SourceDoc]


class SourceRemoved(msgspec.Struct):
    removed: SourceDoc
    warnings: list[str]  # clean-up that failed (e.g. a replication slot to drop by hand)


def _tenants(doc: dict[str, Any]) -> set[str]:
    """The tenants a declaration (or a source document) feeds."""
    if doc.get("tenant") is not None:
        return {str(doc["tenant"])}
    tenants = doc.get("tenants")
    return {str(t) for t in tenants.values()} if isinstance(tenants, dict) else set()


def _owned(principal: Principal, doc: dict[str, Any]) -> bool:
    return principal.operator or _tenants(doc) == {principal.tenant}


def _running(legacy: LegacySources | None) -> LegacySources:
    if legacy is None:
        raise ApiError(409, "sources_disabled", "legacy sources are off in this process "
                       "(AGENTFLOW_LEGACY_SOURCES=0)")  # fmt: skip
    return legacy


@get("/v1/admin/sources", opt=ADMIN, responses=errors(401, 403, 409))
@in_thread
def list_sources(
    principal: NamedDependency[Principal], legacy: NamedDependency[LegacySources | None]
) -> SourceList:
    """The caller's declared sources (an operator's: every one) with their capture status."""
    return SourceList([s for s in _running(legacy).statuses() if _owned(principal, s)])


@get("/v1/admin/sources/{name:str}", opt=ADMIN, responses=errors(401, 403, 404, 409))
@in_thread
def get_source(
    principal: NamedDependency[Principal], legacy: NamedDependency[LegacySources | None], name: SourceName
) -> SourceDoc:
    found = [s for s in _running(legacy).statuses() if s["name"] == name and _owned(principal, s)]
    if not found:
        raise ApiError(404, "not_found", f"no source {name!r}")
    return found[0]


@post("/v1/admin/sources", opt=ADMIN, status_code=201, responses=errors(401, 403, 409, 413, 422))
@in_thread
def add_source(
    principal: NamedDependency[Principal],
    legacy: NamedDependency[LegacySources | None],
    data: JSONBody[SourceDoc],
    replace: Annotated[bool, QueryParameter(description="replace a declaration of the same name")] = False,
) -> SourceDoc:
    """Declare a source; its capture starts within a reconcile turn (2 s). 409 if the name is taken
    (without ``replace``, or when another tenant's source has it); 422 for an invalid declaration; 403
    for a declaration feeding another tenant (unless the key is an operator's)."""
    sources = _running(legacy)
    if not isinstance(data, dict):
        raise ApiError(422, "invalid_source", "a source declaration is a JSON object")
    if not _owned(principal, data) and _tenants(data):
        raise ApiError(403, "cross_tenant", "this API key may declare sources of its own tenant only",
                       {"tenant": principal.tenant})  # fmt: skip
    name = data.get("name")
    if replace and any(s["name"] == name and not _owned(principal, s) for s in sources.statuses()):
        raise ApiError(409, "source_exists", f"source {name!r} already exists")
    try:
        status = sources.add(data, replace=replace)
    except SourceSpecError as exc:
        raise ApiError(422, "invalid_source", str(exc)) from exc
    except SourceExists as exc:
        raise ApiError(409, "source_exists", str(exc)) from exc
    return status.public()


@delete("/v1/admin/sources/{name:str}", opt=ADMIN, status_code=200, responses=errors(401, 403, 404, 409))
@in_thread
def remove_source(
    principal: NamedDependency[Principal], legacy: NamedDependency[LegacySources | None], name: SourceName
) -> SourceRemoved:
    """Stop capturing, drop the connector (and a Postgres source's slot), forget the offsets;
    ``warnings`` lists clean-up that failed (an unreachable legacy database keeps its slot)."""
    sources = _running(legacy)
    if not any(s["name"] == name and _owned(principal, s) for s in sources.statuses()):
        raise ApiError(404, "not_found", f"no source {name!r}")
    try:
        status, warnings = sources.remove(name)
    except SourceNotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from exc
    return SourceRemoved(status.public(), warnings)


SOURCE_ROUTES = [list_sources, get_source, add_source, remove_source]

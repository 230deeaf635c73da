"""``/v1/admin/sources``: legacy CDC sources (services/legacy_sources.py) -- add, list, status, remove.

Admin actions (same rule as services/api/admin_routes.py). The body of a POST is the source
declaration as JSON (connectors/legacy/declaration.py; ``agentflow sources add FILE`` sends the YAML file's
content); ``?replace=true`` replaces an existing declaration of the same name.
"""

from __future__ import annotations

from typing import Any

from anyio import to_thread
from litestar import Request, Response, delete, get, post
from litestar.handlers import HTTPRouteHandler

from connectors.legacy.declaration import SourceSpecError
from connectors.legacy.registry import SourceExists, SourceNotFound
from services.api.admin_routes import _admin
from services.api.context import json_response, runtime_of
from services.api.errors import ApiError


def _legacy(request: Request[Any, Any, Any]) -> Any:
    _admin(request)
    legacy = runtime_of(request).legacy
    if legacy is None:
        raise ApiError(409, "sources_disabled", "legacy sources are off in this process "
                       "(AGENTFLOW_LEGACY_SOURCES=0)")  # fmt: skip
    return legacy


@get("/v1/admin/sources", name="sources.list")
async def list_sources(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Every declared source with its capture status: state, counters, last position, lag, errors."""
    legacy = _legacy(request)
    return json_response({"sources": await to_thread.run_sync(legacy.statuses)})


@get("/v1/admin/sources/{name:str}", name="sources.get")
async def get_source(request: Request[Any, Any, Any], name: str) -> Response[bytes]:
    legacy = _legacy(request)
    found = [s for s in await to_thread.run_sync(legacy.statuses) if s["name"] == name]
    if not found:
        raise ApiError(404, "not_found", f"no source {name!r}")
    return json_response(found[0])


@post("/v1/admin/sources", status_code=201, name="sources.add")
async def add_source(request: Request[Any, Any, Any]) -> Response[bytes]:
    legacy = _legacy(request)
    try:
        declaration = await request.json()
    except Exception as exc:
        raise ApiError(400, "invalid_json", "the body must be a JSON source declaration") from exc
    replace = request.query_params.get("replace", "").lower() in ("1", "true", "yes")
    try:
        status = await to_thread.run_sync(lambda: legacy.add(declaration, replace=replace))
    except SourceSpecError as exc:
        raise ApiError(422, "invalid_source", str(exc)) from exc
    except SourceExists as exc:
        raise ApiError(409, "source_exists", str(exc)) from exc
    return json_response(status.public(), 201)


@delete("/v1/admin/sources/{name:str}", status_code=200, name="sources.remove")
async def remove_source(request: Request[Any, Any, Any], name: str) -> Response[bytes]:
    """Stop capturing, drop the connector (and a Postgres source's slot), forget the offsets;
    ``warnings`` lists clean-up that failed (an unreachable legacy database keeps its slot)."""
    legacy = _legacy(request)
    try:
        status, warnings = await to_thread.run_sync(legacy.remove, name)
    except SourceNotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from exc
    return json_response({"removed": status.public(), "warnings": warnings})


SOURCE_ROUTES: list[HTTPRouteHandler] = [list_sources, get_source, add_source, remove_source]

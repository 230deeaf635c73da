"""``GET /v1/search``: entities of the caller's tenant, metrics and catalog fields, ranked."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from litestar import get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from projections.entities import ENTITY_TABLES
from readmodels.search import EntitySearch
from services.api.consistency import ReadAfter
from services.api.dependencies import READ
from services.api.errors import ApiError
from services.api.openapi import errors


class SearchHit(msgspec.Struct):
    type: Literal["entity", "metric", "catalog_field"]
    id: str
    entity_type: str | None
    score: float
    snippet: str
    endpoint: str


class IndexStats(msgspec.Struct):
    entities: int
    metrics_and_fields: int


class SearchMeta(msgspec.Struct):
    as_of_position: int
    freshness_seconds: float
    indexed: IndexStats
    stale: bool | msgspec.UnsetType = msgspec.UNSET


class SearchResults(msgspec.Struct):
    query: str
    results: list[SearchHit]
    meta: SearchMeta


@get("/v1/search", opt=READ, responses=errors(401, 422, 503))
async def search(
    tenant: NamedDependency[str],
    search: NamedDependency[EntitySearch],
    read_after: NamedDependency[ReadAfter],
    q: Annotated[str, QueryParameter(description="what to look for: 2 to 256 characters")] = "",
    limit: Annotated[int, QueryParameter(description="at most this many results", ge=1, le=50)] = 10,
    entity_types: Annotated[
        list[str] | None,
        QueryParameter(description="only entities of these types (comma-separated or repeated): "
                       + ", ".join(ENTITY_TABLES) + "; leaves metrics out"),
    ] = None,
) -> SearchResults:
    """Ids, names, e-mails, statuses, metric and field words; an entity is found as soon as its event
    is applied (``min_position`` waits for a command's own write)."""
    q = q.strip()
    if len(q) < 2:
        raise ApiError(422, "invalid_query", "q must be at least 2 characters")
    if len(q) > 256:
        raise ApiError(422, "invalid_query", "q must be at most 256 characters")
    types: set[str] | None = None
    if entity_types:
        types = {t.strip().lower() for raw in entity_types for t in raw.split(",") if t.strip()}
        unknown = types - set(ENTITY_TABLES)
        if unknown:
            raise ApiError(422, "invalid_entity_types", f"unknown entity types {sorted(unknown)}",
                           {"available": list(ENTITY_TABLES)})  # fmt: skip
    fresh = await read_after.wait()
    found = await search.search(tenant, q, limit, types, fresh)
    return msgspec.convert(found, SearchResults)


SEARCH_ROUTES = [search]

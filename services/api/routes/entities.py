"""``/v1/entity/{type}/{id}``: an order, user, product or session now or as of an instant
(readmodels/entity_queries.py)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import get
from litestar.params import PathParameter

from readmodels.freshness import ReadAfter
from services.api.dependencies import READ, Reads, takes_reads
from services.api.openapi import body, errors
from services.api.reads import AllowStale, AsOf, FastJson, MinPosition, ReadMeta, TimeoutMs

EntityType = Annotated[str, PathParameter(description="order, user, product or session")]
EntityId = Annotated[str, PathParameter(description="e.g. ORD-20260101-0001, USR-00001, PROD-001, SES-…")]


class EntityValue(msgspec.Struct):
    entity_type: str
    entity_id: str
    data: dict[str, Any]  # the entity's fields (API.md "data per type"; contracts in GET /v1/catalog)
    last_updated: str
    freshness_seconds: float
    meta: ReadMeta


@get(
    "/v1/entity/{entity_type:str}/{entity_id:str}", opt=READ,
    responses={200: body(EntityValue, "the entity"), **errors(401, 404, 422, 429, 503)},
)
@takes_reads
async def entity(
    reads: Reads,
    entity_type: EntityType,
    entity_id: EntityId,
    as_of: AsOf = None,
    min_position: MinPosition = None,
    timeout_ms: TimeoutMs = None,
    allow_stale: AllowStale = False,
) -> FastJson:
    """404 for an unknown type or id (or an entity that did not exist yet at ``as_of``)."""
    found = await reads.entities.read(
        reads.tenant, entity_type, entity_id, as_of, ReadAfter(min_position, timeout_ms, allow_stale)
    )
    return FastJson(found)


ENTITY_ROUTES = [entity]

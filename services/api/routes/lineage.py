"""``GET /v1/lineage/{entity_type}/{entity_id}``: the events, positions and layers that built one entity's
read-model row (readmodels/lineage.py)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from anyio import to_thread
from litestar import get
from litestar.di import NamedDependency
from litestar.params import PathParameter

from readmodels.lineage import LINEAGE_TYPES, Lineage
from services.api.consistency import ReadAfter
from services.api.dependencies import READ
from services.api.errors import ApiError
from services.api.openapi import errors

Unset = msgspec.UnsetType
UNSET = msgspec.UNSET


class Durations(msgspec.Struct):
    occurred_to_recorded: float | None
    recorded_to_applied: float | None


class DeadLetterNote(msgspec.Struct):
    pipeline: str
    stage: str
    reason: str


class LineageEvent(msgspec.Struct):
    position: int
    event_id: str
    type: str
    stream_type: str
    stream_id: str
    stream_version: int
    schema_version: int
    occurred_at: str
    recorded_at: str
    applied_at: str | None
    status: str  # applied | pending | dead_lettered
    correlation_id: str | None
    causation_id: str | None
    actor: str | None
    durations_ms: Durations
    in_read_model_row: bool | Unset = UNSET
    in_lake: bool | Unset = UNSET
    dead_letter: DeadLetterNote | Unset = UNSET


class LagStats(msgspec.Struct):
    count: int
    min_ms: float
    p50_ms: float
    max_ms: float


class LineageNode(msgspec.Struct):
    """One layer: source, event_store, validation, serving, lake (when this process runs one), api."""

    layer: str
    system: str
    table_or_topic: str
    processed_at: str | None
    quality_score: float | None
    events: int | Unset = UNSET
    position: int | None | Unset = UNSET
    duration_ms: LagStats | None | Unset = UNSET
    rejected: int | Unset = UNSET
    tables: list[str] | Unset = UNSET
    complete: bool | Unset = UNSET


class ContractRef(msgspec.Struct):
    name: str
    version: str


class ReadModelState(msgspec.Struct):
    table: str
    tables: list[str]
    present: bool
    row_version: int | None
    contract: ContractRef


class LineageMeta(msgspec.Struct):
    as_of_position: int
    deployment: str


class LineageReport(msgspec.Struct):
    entity_type: str
    entity_id: str
    lineage: list[LineageNode]
    freshness_seconds: float
    validated: bool
    enriched: bool
    read_model: ReadModelState
    events: list[LineageEvent]
    meta: LineageMeta


@get("/v1/lineage/{entity_type:str}/{entity_id:str}", opt=READ, responses=errors(401, 404, 422, 503))
async def lineage(
    tenant: NamedDependency[str],
    lineage: NamedDependency[Lineage],
    read_after: NamedDependency[ReadAfter],
    entity_type: Annotated[str, PathParameter(description=", ".join(LINEAGE_TYPES))],
    entity_id: Annotated[str, PathParameter(description="e.g. ORD-20240501-0001")],
) -> LineageReport:
    """404 for an unknown type, or when no event of the caller's tenant feeds the entity."""
    if entity_type not in LINEAGE_TYPES:
        raise ApiError(404, "unknown_entity_type", f"unknown entity type {entity_type!r}",
                       {"available": list(LINEAGE_TYPES)})  # fmt: skip
    await read_after.wait()
    report: dict[str, Any] | None = await to_thread.run_sync(lineage.report, tenant, entity_type, entity_id)
    if report is None:
        raise ApiError(404, "entity_not_found", f"no lineage found for {entity_type}/{entity_id}")
    return msgspec.convert(report, LineageReport)


LINEAGE_ROUTES = [lineage]

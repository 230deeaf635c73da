"""The API's answers as msgspec Structs, named and shaped as the response components of the served
OpenAPI schema (docs/openapi.json; tests/unit/test_sdk_schema.py fails when they drift apart).
Unknown fields are ignored, so a server that adds one does not break an older client."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

Status = Literal["healthy", "degraded", "unhealthy"]


class ReadMeta(msgspec.Struct, frozen=True):
    as_of: str
    as_of_position: int
    freshness_seconds: float
    is_historical: bool
    stale: bool | None = None


class MetricValue(msgspec.Struct, frozen=True):
    metric_name: str
    value: float
    unit: str
    window: str
    computed_at: str
    components: dict[str, Any]
    meta: ReadMeta


class EntityValue(msgspec.Struct, frozen=True):
    entity_type: str
    entity_id: str
    data: dict[str, Any]
    last_updated: str
    freshness_seconds: float
    meta: ReadMeta


class Stage(msgspec.Struct, frozen=True):
    stage: str
    at: datetime
    position: int


class StageDuration(msgspec.Struct, frozen=True):
    from_: str = msgspec.field(name="from")
    to: str
    seconds: float


class TimelineEvent(msgspec.Struct, frozen=True):
    event_id: str
    event_type: str
    position: int
    stream_version: int
    occurred_at: datetime
    recorded_at: datetime
    data: dict[str, Any]
    stage: str | None
    projected: bool
    seconds_since_placed: float | None
    seconds_since_previous: float | None
    command_id: Any
    correlation_id: Any
    invalid_reason: str | None = None


class TimelineMeta(msgspec.Struct, frozen=True):
    as_of: str
    as_of_position: int
    is_historical: bool
    source: str


class OrderTimeline(msgspec.Struct, frozen=True):
    entity_type: str
    entity_id: str
    current_stage: str | None
    event_count: int
    events: list[TimelineEvent]
    first_position: int
    last_position: int
    stages: list[Stage]
    stage_durations: list[StageDuration]
    total_seconds: float
    meta: TimelineMeta


class QueryMeta(msgspec.Struct, frozen=True):
    as_of: str
    as_of_position: int
    execution_time_ms: float
    freshness_seconds: float
    is_historical: bool
    mode: str
    sql: str
    tables: list[str]
    stale: bool | None = None


class QueryMetadata(msgspec.Struct, frozen=True):
    rows_returned: int
    execution_time_ms: float
    data_freshness_seconds: float


class QueryResult(msgspec.Struct, frozen=True):
    answer: list[dict[str, Any]]  # the page's rows (as ``rows``)
    answer_text: str | None  # a sentence for semantic queries and questions; None for SQL
    rows: list[dict[str, Any]]
    columns: list[str]
    sql: str
    mode: str
    tables: list[str]
    total_count: int | None
    next_cursor: str | None
    has_more: bool
    page_size: int
    metadata: QueryMetadata
    meta: QueryMeta
    currency: str | None = None
    interpretation: dict[str, Any] | None = None
    units: dict[str, str] | None = None


class IndexStats(msgspec.Struct, frozen=True):
    entities: int
    metrics_and_fields: int


class SearchHit(msgspec.Struct, frozen=True):
    type: Literal["entity", "metric", "catalog_field"]
    id: str
    entity_type: str | None
    score: float
    snippet: str
    endpoint: str


class SearchMeta(msgspec.Struct, frozen=True):
    as_of_position: int
    freshness_seconds: float
    indexed: IndexStats
    stale: bool | None = None


class SearchResults(msgspec.Struct, frozen=True):
    query: str
    results: list[SearchHit]
    meta: SearchMeta


class EntityDoc(msgspec.Struct, frozen=True):
    description: str
    fields: dict[str, str]
    primary_key: str
    contract_version: str


class MetricDoc(msgspec.Struct, frozen=True):
    description: str
    unit: str
    available_windows: list[str]
    contract_version: str
    source_events: list[str]
    source_table: str
    dimensions: list[str]
    series_grains: list[str]
    freshness_budget_seconds: float


class AuditSource(msgspec.Struct, frozen=True):
    path: str
    description: str
    layers: list[str]


class Catalog(msgspec.Struct, frozen=True):
    entities: dict[str, EntityDoc]
    metrics: dict[str, MetricDoc]
    streaming_sources: dict[str, dict[str, Any]]
    audit_sources: dict[str, AuditSource]


class HealthComponent(msgspec.Struct, frozen=True):
    name: str
    status: Status
    message: str
    metrics: dict[str, Any]
    source: str


class HealthReport(msgspec.Struct, frozen=True):
    status: Status
    checked_at: str
    components: list[HealthComponent]


class WhoAmI(msgspec.Struct, frozen=True):
    """``GET /v1/whoami``: the calling key's tenant and scopes."""

    tenant: str
    scopes: list[str]
    grants: list[str]
    key_id: str | None
    name: str
    expires_at: float | None


class DeadLetterView(msgspec.Struct, frozen=True):
    id: int | None
    tenant_id: str | None
    pipeline: str
    stage: str
    status: str
    reason: str
    reason_class: str
    event_id: str | None
    event_type: str | None
    position: int | None
    record: Any
    corrected_data: Any
    status_note: str | None
    replay_event_id: str | None
    replay_position: int | None
    created_at: str | None
    updated_at: str | None
    replayed_at: str | None
    dismissed_at: str | None


class DeadLetterReplayed(DeadLetterView, frozen=True):
    appended: bool


class DeadLetterList(msgspec.Struct, frozen=True):
    count: int
    data: list[DeadLetterView]
    next_cursor: str | None


class OrderAck(msgspec.Struct, frozen=True):
    order_id: str
    stream_version: int
    position: int


class PaymentAck(msgspec.Struct, frozen=True):
    payment_id: str
    stream_version: int
    position: int


class ProductAck(msgspec.Struct, frozen=True):
    product_id: str
    stream_version: int
    position: int


class UserAck(msgspec.Struct, frozen=True):
    user_id: str
    stream_version: int
    position: int


class SessionAck(msgspec.Struct, frozen=True):
    session_id: str
    stream_version: int
    position: int


Ack = OrderAck | PaymentAck | ProductAck | UserAck | SessionAck


class ErrorDetail(msgspec.Struct, frozen=True):
    code: str
    message: str
    details: Any = None


class ErrorBody(msgspec.Struct, frozen=True):
    detail: str
    error: ErrorDetail
    correlation_id: str


class StreamEvent(msgspec.Struct, frozen=True):
    """One Server-Sent Event of ``/v1/stream/events`` (the schema's EventFrame, with ``data`` decoded)."""

    id: int
    event: str
    data: dict[str, Any]

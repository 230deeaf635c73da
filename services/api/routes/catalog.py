"""``/v1/catalog``: the entities and metrics served, from their current contract versions
(readmodels/catalog.py)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import get
from litestar.di import NamedDependency

from readmodels.catalog import build_catalog
from services.api.dependencies import READ
from services.api.openapi import errors


class EntityDoc(msgspec.Struct):
    description: str
    fields: dict[str, str]  # field -> description
    primary_key: str
    contract_version: str


class MetricDoc(msgspec.Struct):
    description: str
    unit: str
    available_windows: list[str]
    contract_version: str
    source_events: list[str]
    source_table: str
    dimensions: list[str]
    series_grains: list[str]
    freshness_budget_seconds: int | float


class AuditSource(msgspec.Struct):
    path: str
    description: str
    layers: list[str]


class Catalog(msgspec.Struct):
    entities: dict[str, EntityDoc]
    metrics: dict[str, MetricDoc]
    streaming_sources: dict[str, dict[str, Any]]  # {path, transport, description, filters}
    audit_sources: dict[str, AuditSource]


@get("/v1/catalog", opt=READ, responses=errors(401, 429), sync_to_thread=False)
def catalog(tenant: NamedDependency[str]) -> Catalog:
    return msgspec.convert(build_catalog(), Catalog)


CATALOG_ROUTES = [catalog]

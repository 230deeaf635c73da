"""The catalog of entities and metrics served by ``GET /v1/catalog``."""

from __future__ import annotations

from typing import Any

from readmodels.entities import ENTITY_FIELDS
from readmodels.metrics import METRICS


def build_catalog() -> dict[str, Any]:
    return {
        "entities": {
            name: {
                "description": description,
                "fields": fields,
                "primary_key": primary_key,
                "contract_version": "1.0.0",
            }
            for name, (description, primary_key, fields) in ENTITY_FIELDS.items()
        },
        "metrics": {
            name: {
                "description": spec.description,
                "unit": spec.unit,
                "available_windows": list(spec.windows),
                "contract_version": spec.contract_version,
                "source_events": sorted(spec.source_events),
                "source_table": spec.source_table,
            }
            for name, spec in METRICS.items()
        },
        "streaming_sources": {},
        "audit_sources": {
            "events": {
                "path": "/v1/entity/{type}/{id}?as_of=",
                "description": "The Postgres event store; entities fold it up to any instant",
                "layers": ["postgres event store", "clickhouse read models", "iceberg lake"],
            }
        },
    }

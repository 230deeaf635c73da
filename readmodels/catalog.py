"""The catalog of entities and metrics served by ``GET /v1/catalog``: the current contract versions."""

from __future__ import annotations

from typing import Any

from readmodels.contract_registry import REGISTRY


def build_catalog() -> dict[str, Any]:
    return {
        "entities": {
            name: {
                "description": c.doc["description"],
                "fields": {f: spec["description"] for f, spec in c.doc["fields"].items()},
                "primary_key": c.doc["primary_key"],
                "contract_version": c.version,
            }
            for name, c in REGISTRY.currents("entity").items()
        },
        "metrics": {
            name: {
                "description": c.doc["description"],
                "unit": c.doc["unit"],
                "available_windows": list(c.doc["windows"]),
                "contract_version": c.version,
                "source_events": sorted(c.moved_by),
                "source_table": c.tables[0],
                "dimensions": list(c.doc["dimensions"]),
                "series_grains": list(c.get("grains") or ()),
                "freshness_budget_seconds": c.doc["freshness_budget_seconds"],
            }
            for name, c in REGISTRY.currents("metric").items()
        },
        "streaming_sources": {},
        "audit_sources": {
            "events": {
                "path": "/v1/entity/{type}/{id}?as_of=",
                "description": "The Postgres event store; entities fold it up to any instant",
                "layers": ["postgres event store", "clickhouse read models", "iceberg lake"],
            },
            "contracts": {
                "path": "/v1/contracts",
                "description": "Versioned metric and entity contracts (readmodels/contracts)",
                "layers": ["contract files"],
            },
        },
    }

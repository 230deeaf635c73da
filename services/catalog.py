"""The catalog of entities and metrics served by ``GET /v1/catalog``."""

from __future__ import annotations

from typing import Any

from readmodels.metrics import METRICS

ENTITIES: dict[str, dict[str, Any]] = {
    "order": {
        "description": "A customer order folded from its event stream",
        "primary_key": "order_id",
        "fields": {
            "order_id": "Order id (ORD-YYYYMMDD-NNNN)",
            "user_id": "Customer who placed the order",
            "status": "pending|confirmed|shipped|delivered|cancelled|refunded",
            "total_amount": "Σ quantity × unit price, major units",
            "currency": "ISO 4217 currency of the order",
            "created_at": "When the order was placed",
            "lines": "Ordered products with quantity and unit price",
            "payment_status": "initiated|completed|failed|refunded, or null before any payment",
        },
    },
    "user": {
        "description": "A customer and their order history",
        "primary_key": "user_id",
        "fields": {
            "user_id": "User id (USR-NNNNN)",
            "total_orders": "Non-cancelled orders placed",
            "total_spent": "Spent on non-cancelled orders, major units",
            "first_order_at": "First order time",
            "last_order_at": "Latest order time",
            "preferred_category": "Category the user bought most units of",
        },
    },
    "product": {
        "description": "A product with its price and stock",
        "primary_key": "product_id",
        "fields": {
            "product_id": "Product id (PROD-NNN)",
            "name": "Product name",
            "category": "Product category",
            "price": "Current list price, major units",
            "in_stock": "Whether any stock can still be sold",
            "stock_quantity": "Sellable stock: on hand minus reserved",
        },
    },
    "session": {
        "description": "A clickstream session",
        "primary_key": "session_id",
        "fields": {
            "session_id": "Session id (SES-…)",
            "user_id": "User of the session, when known",
            "started_at": "First event",
            "ended_at": "Latest event",
            "duration_seconds": "ended_at − started_at",
            "event_count": "Events in the session",
            "unique_pages": "Distinct pages viewed",
            "funnel_stage": "browse|engaged|cart|checkout",
            "is_conversion": "Whether the session reached checkout",
        },
    },
}


def build_catalog() -> dict[str, Any]:
    return {
        "entities": {
            name: {
                "description": e["description"],
                "fields": e["fields"],
                "primary_key": e["primary_key"],
                "contract_version": "1.0.0",
            }
            for name, e in ENTITIES.items()
        },
        "metrics": {
            name: {
                "description": spec.description,
                "unit": spec.unit,
                "available_windows": list(spec.windows),
                "contract_version": "1.0.0",
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

"""Entity reads from the ClickHouse read models (same ``data`` shape as ``fold_entity``)."""

from __future__ import annotations

from projections.entities import ENTITY_TABLES, ROW_ENTITIES, EntityData, user_entity
from projections.rows import ORDER_LINES, ORDERS
from readmodels.clickhouse import ClickHouseStore

EntityRow = EntityData

ENTITY_TYPES = tuple(ENTITY_TABLES)

# entity -> (description, primary key, field -> description); for the catalog
ENTITY_FIELDS: dict[str, tuple[str, str, dict[str, str]]] = {
    "order": (
        "A customer order and its lifecycle",
        "order_id",
        {
            "order_id": "ORD-YYYYMMDD-NNNN",
            "user_id": "buyer",
            "status": "pending|confirmed|shipped|delivered|cancelled|refunded",
            "total_amount": "order total, major units",
            "currency": "ISO 4217",
            "created_at": "placed at",
            "lines": "product_id, quantity, unit_price",
            "payment_status": "completed|refunded or null",
            "paid_amount": "captured, major units",
            "refunded_amount": "major units",
        },
    ),
    "user": (
        "A registered customer with order aggregates",
        "user_id",
        {
            "user_id": "USR-NNNNN",
            "total_orders": "non-cancelled orders",
            "total_spent": "spend (net of refunds) in the user's most used currency",
            "currency": "currency of total_spent",
            "spent_by_currency": "currency -> spend",
            "first_order_at": "first order placed",
            "last_order_at": "last order placed",
            "preferred_category": "category with most units bought",
        },
    ),
    "product": (
        "A product with its price and stock",
        "product_id",
        {
            "product_id": "PROD-NNN",
            "name": "name",
            "category": "category",
            "price": "major units",
            "in_stock": "stock_quantity > 0",
            "stock_quantity": "sellable: on_hand - reserved",
            "on_hand": "units received",
            "reserved": "units held by open orders",
        },
    ),
    "session": (
        "A clickstream session",
        "session_id",
        {
            "session_id": "SES-...",
            "user_id": "user or null",
            "started_at": "first event",
            "ended_at": "last event",
            "duration_seconds": "ended_at - started_at",
            "event_count": "events",
            "unique_pages": "distinct page urls",
            "funnel_stage": "browse|engaged|cart|checkout",
            "is_conversion": "reached checkout",
        },
    ),
}


def get_entity(store: ClickHouseStore, tenant_id: str, entity_type: str, entity_id: str) -> EntityRow | None:
    table = ENTITY_TABLES.get(entity_type)
    if table is None:
        return None
    row = store.get_row(table, (tenant_id, entity_id))
    if row is None:
        return None
    if entity_type in ROW_ENTITIES:
        return ROW_ENTITIES[entity_type](row)
    orders = store.select_rows(ORDERS, tenant_id, "user_id = {u:String}", {"u": entity_id})
    lines = store.select_rows(ORDER_LINES, tenant_id, "user_id = {u:String}", {"u": entity_id})
    return user_entity(row, orders, lines)

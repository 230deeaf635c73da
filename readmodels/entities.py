"""Entity reads from the ClickHouse read models (same ``data`` shape as ``fold_entity``)."""

from __future__ import annotations

from projections.entities import ENTITY_TABLES, ROW_ENTITIES, EntityData, user_entity
from projections.rows import ORDER_LINES, ORDERS
from readmodels.contract_registry import REGISTRY
from readmodels.ports import ReadModelStore

EntityRow = EntityData

ENTITY_TYPES = tuple(ENTITY_TABLES)

# entity -> (description, primary key, field -> description); for the catalog (from the contracts)
ENTITY_FIELDS: dict[str, tuple[str, str, dict[str, str]]] = {
    name: (
        c.doc["description"],
        c.doc["primary_key"],
        {f: spec["description"] for f, spec in c.doc["fields"].items()},
    )
    for name, c in REGISTRY.currents("entity").items()
}


def get_entity(store: ReadModelStore, tenant_id: str, entity_type: str, entity_id: str) -> EntityRow | None:
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

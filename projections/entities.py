"""Read-model rows -> API entity ``data`` (shared by the live read model and time travel).

Timestamps stay timezone-aware datetimes; the API formats them.

``fold_entity`` folds a list of events through ``project`` with an in-memory lookup and maps the
result with the same functions ``readmodels.entities.get_entity`` uses, so both shapes match.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.events import RecordedEvent
from domain.money import to_major
from projections.feeds import ORDER_OWNER
from projections.rows import ORDER_LINES, ORDERS, PRODUCTS, SESSIONS, USERS, MemoryLookup, Row, project

ENTITY_TABLES = {"order": ORDERS, "user": USERS, "product": PRODUCTS, "session": SESSIONS}


@dataclass(frozen=True, slots=True)
class EntityData:
    data: dict[str, Any]
    last_updated: datetime
    version: int


def order_entity(row: Row) -> EntityData:
    cur = row["currency"]
    data = {
        "order_id": row["order_id"],
        "user_id": row["user_id"],
        "status": row["status"],
        "total_amount": to_major(int(row["total_minor"]), cur),
        "currency": cur,
        "created_at": row["placed_at"],
        "channel": row["channel"],
        "lines": [
            {
                "product_id": ln["product_id"],
                "quantity": int(ln["quantity"]),
                "unit_price": to_major(int(ln["unit_price_minor"]), cur),
            }
            for ln in row["lines"]
        ],
        "payment_id": row["payment_id"] or None,
        "payment_status": row["payment_status"] or None,
        "paid_amount": to_major(int(row["paid_minor"]), cur),
        "refunded_amount": to_major(int(row["refunded_minor"]), cur),
        "confirmed_at": row["confirmed_at"],
        "shipped_at": row["shipped_at"],
        "delivered_at": row["delivered_at"],
        "cancelled_at": row["cancelled_at"],
        "refunded_at": row["refunded_at"],
        "updated_at": row["updated_at"],
    }
    return EntityData(data, row["updated_at"], int(row["version"]))


def product_entity(row: Row) -> EntityData:
    cur = row["currency"]
    sellable = int(row["on_hand"]) - int(row["reserved"])
    data = {
        "product_id": row["product_id"],
        "name": row["name"],
        "category": row["category"],
        "price": to_major(int(row["price_minor"]), cur),
        "currency": cur,
        "in_stock": sellable > 0,
        "stock_quantity": sellable,
        "on_hand": int(row["on_hand"]),
        "reserved": int(row["reserved"]),
    }
    return EntityData(data, row["updated_at"], int(row["version"]))


def session_entity(row: Row) -> EntityData:
    started, ended = row["started_at"], row["last_event_at"]
    data = {
        "session_id": row["session_id"],
        "user_id": row["user_id"] or None,
        "started_at": started,
        "ended_at": ended,
        "duration_seconds": (ended - started).total_seconds(),
        "event_count": int(row["event_count"]),
        "unique_pages": len(row["pages"]),
        "funnel_stage": row["funnel_stage"],
        "is_conversion": bool(row["is_conversion"]),
    }
    return EntityData(data, ended, int(row["version"]))


# entities whose data is one read-model row (a user also needs its orders and lines)
ROW_ENTITIES: dict[str, Callable[[Row], EntityData]] = {
    "order": order_entity,
    "product": product_entity,
    "session": session_entity,
}


def user_entity(user: Row, orders: Iterable[Row], lines: Iterable[Row]) -> EntityData:
    """User profile plus order aggregates.

    ``total_orders`` counts non-cancelled orders; ``first_order_at``/``last_order_at`` span every
    order placed (cancelled ones too; None when the user never ordered). Money never mixes
    currencies: ``spent_by_currency`` maps currency -> total minus refunds of non-cancelled orders
    (major units), and ``total_spent``/``currency`` report the currency the user ordered in most
    often (ties: larger spend, then code). ``preferred_category`` is the category with the most
    units over non-cancelled order lines (ties: alphabetical), '' when none.
    """
    orders = list(orders)
    live = [o for o in orders if o["status"] != "cancelled"]
    spent: dict[str, int] = {}
    counts: Counter[str] = Counter()
    for o in live:
        spent[o["currency"]] = spent.get(o["currency"], 0) + int(o["total_minor"]) - int(o["refunded_minor"])
        counts[o["currency"]] += 1
    currency = min(counts, key=lambda c: (-counts[c], -spent[c], c)) if counts else None
    units: Counter[str] = Counter()
    for ln in lines:
        if not ln["cancelled"] and ln["category"]:
            units[ln["category"]] += int(ln["quantity"])
    preferred = min(units, key=lambda c: (-units[c], c)) if units else ""
    placed = [o["placed_at"] for o in orders]
    data = {
        "user_id": user["user_id"],
        "name": user["name"],
        "email": user["email"],
        "region": user["region"],
        "registered_at": user["registered_at"],
        "total_orders": len(live),
        "total_spent": to_major(spent[currency], currency) if currency else 0.0,
        "currency": currency,
        "spent_by_currency": {c: to_major(v, c) for c, v in sorted(spent.items())},
        "first_order_at": min(placed) if placed else None,
        "last_order_at": max(placed) if placed else None,
        "preferred_category": preferred,
    }
    last_updated = max([user["registered_at"], *(o["updated_at"] for o in orders)])
    version = max([int(user["version"]), *(int(o["version"]) for o in orders)])
    return EntityData(data, last_updated, version)


def fold_entity(entity_type: str, entity_id: str, events: list[RecordedEvent]) -> dict[str, Any] | None:
    """Entity ``data`` after folding ``events`` (position order; one tenant), or None if absent.

    Pass at least the streams that feed the entity and those its fold looks up (projections/feeds.py;
    the event store's ``read_entity_events_until`` reads exactly these).
    """
    found = fold_entity_row(entity_type, entity_id, events)
    return found.data if found is not None else None


def fold_entity_row(entity_type: str, entity_id: str, events: list[RecordedEvent]) -> EntityData | None:
    table = ENTITY_TABLES.get(entity_type)
    if table is None or not events:
        return None
    mem = MemoryLookup()
    for e in sorted(events, key=lambda ev: ev.position):
        mem.apply(project(e, mem))
    if len({e.tenant_id for e in events}) != 1:
        raise ValueError("fold_entity takes the events of one tenant")
    tenant = events[0].tenant_id
    row = mem.get(table, (tenant, entity_id))
    if row is None:
        return None
    if entity_type in ROW_ENTITIES:
        return ROW_ENTITIES[entity_type](row)
    # the orders that feed the user: an orders row carries its OrderPlaced's link field
    orders = [o for o in mem.tables[ORDERS].values() if o[ORDER_OWNER.field] == entity_id]
    ids = {o["order_id"] for o in orders}
    lines = [ln for ln in mem.tables[ORDER_LINES].values() if ln["order_id"] in ids]
    return user_entity(row, orders, lines)

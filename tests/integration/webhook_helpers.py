"""Shared pieces of the webhook tests: appending events. (Polling is ``waiting.eventually``.)"""

from __future__ import annotations

import uuid

from commands.ports import StreamWrite
from connectors.event_store import PostgresEventStore
from domain.events import NewEvent


def append_order(
    store: PostgresEventStore, tenant: str, total_minor: int = 1000, order_id: str | None = None
) -> int:
    """Append one OrderPlaced (a new stream) and return its position."""
    oid = order_id or f"ORD-{uuid.uuid4().hex[:8]}"
    data = {
        "order_id": oid, "user_id": "u1", "currency": "USD", "channel": "web", "total_minor": total_minor,
        "lines": [{"product_id": "P1", "quantity": 1, "unit_price_minor": total_minor}],
    }  # fmt: skip
    res = store.append(
        tenant, [StreamWrite("order", oid, 0, [NewEvent("order", oid, "OrderPlaced", data, 2)])], {}
    )
    return res.positions[-1]

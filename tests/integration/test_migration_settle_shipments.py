"""Migration 0007 on a store written before shipping consumed reservations: one StockShipped per
reservation still held by a shipped order, nothing for open or cancelled orders, once."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import make_url

from connectors.database import make_engine
from connectors.event_store import PostgresEventStore
from domain.events import RecordedEvent
from domain.product import Product
from migrations import run_migrations

pytestmark = pytest.mark.integration

T = "t-upgrade"


@pytest.fixture()
def old_store(pg_cluster: Any) -> Iterator[str]:
    """A database of its own, migrated only up to 0006."""
    name = f"upgrade_{uuid.uuid4().hex[:8]}"
    admin = make_engine(pg_cluster.url, pool_size=1, max_overflow=0)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    url = make_url(pg_cluster.url).set(database=name).render_as_string(hide_password=False)
    try:
        run_migrations(url, "0006")
        yield url
    finally:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
        admin.dispose()


def _append(url: str, rows: list[tuple[str, str, int, str, dict[str, Any]]]) -> None:
    """Events as the old code wrote them: (stream type, stream id, version, type, data)."""
    eng = make_engine(url, pool_size=1, max_overflow=0)
    try:
        with eng.begin() as conn:
            for stream_type, stream_id, version, event_type, data in rows:
                conn.exec_driver_sql(
                    "INSERT INTO events (tenant_id, stream_type, stream_id, stream_version, event_type, "
                    "schema_version, data) VALUES (%(t)s, %(st)s, %(sid)s, %(v)s, %(et)s, %(sv)s, %(d)s)",
                    {"t": T, "st": stream_type, "sid": stream_id, "v": version, "et": event_type,
                     "sv": 2 if event_type == "OrderPlaced" else 1, "d": json.dumps(data)},
                )
    finally:
        eng.dispose()


def _stream(url: str, pid: str) -> list[RecordedEvent]:
    eng = make_engine(url, pool_size=1, max_overflow=0)
    try:
        return PostgresEventStore(eng).load_stream(T, "product", pid)
    finally:
        eng.dispose()


def _product(url: str, pid: str) -> Product:
    return Product.fold(_stream(url, pid))


def test_reservations_of_shipped_orders_are_shipped_once(old_store: str) -> None:
    pid = "PROD-001"

    def order(oid: str, qty: int, *steps: str) -> list[tuple[str, str, int, str, dict[str, Any]]]:
        placed = {"order_id": oid, "user_id": "USR-1", "currency": "USD", "channel": "web",
                  "total_minor": qty, "lines": [{"product_id": pid, "quantity": qty, "unit_price_minor": 1}]}
        rows = [("order", oid, 1, "OrderPlaced", placed)]
        rows += [("order", oid, i, step, {"order_id": oid}) for i, step in enumerate(steps, start=2)]
        return rows

    reserve = [("product", pid, 1, "ProductRegistered", {"product_id": pid, "name": "n", "category": "c",
                                                          "price_minor": 1, "currency": "USD"}),
               ("product", pid, 2, "StockReceived", {"product_id": pid, "quantity": 20})]
    held = [("O-SHIPPED", 3), ("O-DELIVERED", 2), ("O-OPEN", 4), ("O-CANCELLED", 5)]
    for v, (oid, qty) in enumerate(held, start=3):
        data = {"product_id": pid, "order_id": oid, "quantity": qty}
        reserve.append(("product", pid, v, "StockReserved", data))
    reserve.append(("product", pid, 7, "StockReleased", {"product_id": pid, "order_id": "O-CANCELLED",
                                                         "quantity": 5}))
    _append(old_store, [
        *reserve,
        *order("O-SHIPPED", 3, "OrderConfirmed", "OrderShipped"),
        *order("O-DELIVERED", 2, "OrderConfirmed", "OrderShipped", "OrderDelivered"),
        *order("O-OPEN", 4, "OrderConfirmed"),
        *order("O-CANCELLED", 5, "OrderCancelled"),
    ])
    assert (_product(old_store, pid).on_hand, _product(old_store, pid).reserved) == (20, 9)  # shipped, held

    run_migrations(old_store)
    run_migrations(old_store)  # a second run (already at head) adds nothing
    events = _stream(old_store, pid)
    settled = [(e.stream_version, e.data, e.metadata.get("upgrade"))
               for e in events if e.event_type == "StockShipped"]
    assert settled == [
        (8, {"product_id": pid, "order_id": "O-DELIVERED", "quantity": 2, "from_reserved": 2},
         "settle_shipped_reservations"),
        (9, {"product_id": pid, "order_id": "O-SHIPPED", "quantity": 3, "from_reserved": 3},
         "settle_shipped_reservations"),
    ]
    after = Product.fold(events)
    assert (after.on_hand, after.reserved, after.reservations) == (15, 4, {"O-OPEN": 4})

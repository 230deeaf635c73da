from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from event_log import T0, EventLog

from domain.events import EVENT_TYPES, RecordedEvent
from projections.entities import fold_entity, fold_entity_row
from projections.rows import (
    EVENTS,
    ORDER_LINES,
    ORDERS,
    PAYMENTS,
    PRODUCTS,
    SESSIONS,
    STOCK_MOVEMENTS,
    USERS,
    MemoryLookup,
    RowChange,
    lookup_keys,
    project,
)

TENANT = "t1"


class Log(EventLog):
    def __init__(self, tenant: str = TENANT) -> None:
        super().__init__(tenant)


def fold(events: list[RecordedEvent], mem: MemoryLookup | None = None) -> MemoryLookup:
    mem = mem or MemoryLookup()
    for e in events:
        mem.apply(project(e, mem))
    return mem


def changes_of(e: RecordedEvent, mem: MemoryLookup) -> dict[str, list[RowChange]]:
    out: dict[str, list[RowChange]] = {}
    for c in project(e, mem):
        out.setdefault(c.table, []).append(c)
    return out


def catalog(log: Log) -> None:
    log.add(
        "ProductRegistered",
        "PROD-001",
        product_id="PROD-001",
        name="Mug",
        category="kitchen",
        price_minor=1299,
        currency="USD",
    )
    log.add(
        "ProductRegistered",
        "PROD-002",
        product_id="PROD-002",
        name="Tee",
        category="apparel",
        price_minor=2000,
        currency="USD",
    )
    log.add("UserRegistered", "USR-00001", user_id="USR-00001", name="Ann", email="a@x.io", region="EU")


def place(
    log: Log, order_id: str = "ORD-20240501-0001", currency: str = "USD", user: str = "USR-00001"
) -> RecordedEvent:
    lines = [
        {"product_id": "PROD-001", "quantity": 2, "unit_price_minor": 1299},
        {"product_id": "PROD-002", "quantity": 1, "unit_price_minor": 2000},
    ]
    return log.add(
        "OrderPlaced",
        order_id,
        order_id=order_id,
        user_id=user,
        currency=currency,
        channel="web",
        lines=lines,
        total_minor=4598,
    )


def test_every_event_type_has_a_handler_and_an_events_row() -> None:
    log = Log()
    catalog(log)
    place(log)
    mem = fold(log.events)
    assert len(mem.tables[EVENTS]) == len(log.events)
    row = mem.tables[EVENTS][(TENANT, 4)]
    assert row["event_type"] == "OrderPlaced" and row["stream_id"] == "ORD-20240501-0001"
    assert json.loads(row["data"])["total_minor"] == 4598
    assert row["command_id"] == "cmd-4" and row["version"] == 4 and row["tenant_id"] == TENANT
    from projections.rows import _HANDLERS

    assert set(_HANDLERS) | {"ReservationRejected"} == set(EVENT_TYPES)


def test_order_lifecycle() -> None:
    log = Log()
    catalog(log)
    placed = place(log)
    mem = fold(log.events)
    order = mem.get(ORDERS, (TENANT, "ORD-20240501-0001"))
    assert order is not None
    assert (
        order["status"] == "pending"
        and order["total_minor"] == 4598
        and order["placed_at"] == placed.occurred_at
    )
    assert order["lines"][0] == {"product_id": "PROD-001", "quantity": 2, "unit_price_minor": 1299}
    line1 = mem.get(ORDER_LINES, (TENANT, "ORD-20240501-0001", 1))
    line2 = mem.get(ORDER_LINES, (TENANT, "ORD-20240501-0001", 2))
    assert line1 is not None and line2 is not None
    assert (line1["category"], line1["quantity"], line1["cancelled"]) == ("kitchen", 2, 0)
    assert (line2["category"], line2["user_id"], line2["currency"]) == ("apparel", "USR-00001", "USD")

    log.add("OrderConfirmed", "ORD-20240501-0001", order_id="ORD-20240501-0001")
    log.add(
        "OrderPaymentCaptured",
        "ORD-20240501-0001",
        order_id="ORD-20240501-0001",
        payment_id="PAY-1",
        amount_minor=4598,
        currency="USD",
    )
    log.add("OrderShipped", "ORD-20240501-0001", order_id="ORD-20240501-0001")
    delivered = log.add("OrderDelivered", "ORD-20240501-0001", order_id="ORD-20240501-0001")
    fold(log.events[-4:], mem)
    order = mem.get(ORDERS, (TENANT, "ORD-20240501-0001"))
    assert order is not None
    assert order["status"] == "delivered" and order["paid_minor"] == 4598
    assert order["payment_id"] == "PAY-1" and order["payment_status"] == "completed"
    assert order["confirmed_at"] and order["shipped_at"] and order["delivered_at"] == delivered.occurred_at
    assert order["version"] == delivered.position and order["updated_at"] == delivered.occurred_at

    log.add(
        "OrderRefunded",
        "ORD-20240501-0001",
        order_id="ORD-20240501-0001",
        amount_minor=1000,
        currency="USD",
        refunded_total_minor=1000,
        full=False, lines=[], restock=False
    )
    fold(log.events[-1:], mem)
    order = mem.get(ORDERS, (TENANT, "ORD-20240501-0001"))
    assert order is not None and order["status"] == "delivered" and order["refunded_minor"] == 1000
    log.add(
        "OrderRefunded",
        "ORD-20240501-0001",
        order_id="ORD-20240501-0001",
        amount_minor=3598,
        currency="USD",
        refunded_total_minor=4598,
        full=True, lines=[], restock=False
    )
    fold(log.events[-1:], mem)
    order = mem.get(ORDERS, (TENANT, "ORD-20240501-0001"))
    assert order is not None
    assert order["status"] == "refunded" and order["refunded_minor"] == 4598
    assert order["payment_status"] == "refunded" and order["refunded_at"] is not None


def test_cancel_re_emits_lines_cancelled() -> None:
    log = Log()
    catalog(log)
    place(log)
    mem = fold(log.events)
    cancel = log.add(
        "OrderCancelled", "ORD-20240501-0001", order_id="ORD-20240501-0001", reason="changed mind"
    )
    changes = changes_of(cancel, mem)
    assert [c.row["status"] for c in changes[ORDERS]] == ["cancelled"]
    assert [(c.key, c.row["cancelled"], c.row["version"]) for c in changes[ORDER_LINES]] == [
        ((TENANT, "ORD-20240501-0001", 1), 1, cancel.position),
        ((TENANT, "ORD-20240501-0001", 2), 1, cancel.position),
    ]
    assert changes[ORDER_LINES][0].row["category"] == "kitchen"


def test_cancel_rebuilds_a_missing_line_row() -> None:
    """A crash between the orders and order_lines writes leaves lines missing; cancel still fills them."""
    log = Log()
    catalog(log)
    place(log)
    mem = fold(log.events)
    mem.tables[ORDER_LINES].clear()
    cancel = log.add("OrderCancelled", "ORD-20240501-0001", order_id="ORD-20240501-0001", reason="x")
    lines = changes_of(cancel, mem)[ORDER_LINES]
    assert [(c.row["line_no"], c.row["cancelled"], c.row["category"]) for c in lines] == [
        (1, 1, "kitchen"),
        (2, 1, "apparel"),
    ]


def test_payments() -> None:
    log = Log()
    log.add(
        "PaymentInitiated",
        "PAY-1",
        payment_id="PAY-1",
        order_id="ORD-1",
        amount_minor=500,
        currency="EUR",
        method="card",
    )
    mem = fold(log.events)
    p = mem.get(PAYMENTS, (TENANT, "PAY-1"))
    assert p is not None and (p["status"], p["amount_minor"], p["method"]) == ("initiated", 500, "card")
    log.add(
        "PaymentCompleted", "PAY-1", payment_id="PAY-1", order_id="ORD-1", amount_minor=500, currency="EUR"
    )
    log.add(
        "PaymentRefunded", "PAY-1", payment_id="PAY-1", order_id="ORD-1", amount_minor=200, currency="EUR"
    )
    fold(log.events[1:], mem)
    p = mem.get(PAYMENTS, (TENANT, "PAY-1"))
    assert p is not None and (p["status"], p["refunded_minor"]) == ("refunded", 200)
    assert p["completed_at"] is not None
    log.add(
        "PaymentInitiated",
        "PAY-2",
        payment_id="PAY-2",
        order_id="ORD-2",
        amount_minor=100,
        currency="EUR",
        method="card",
    )
    log.add("PaymentFailed", "PAY-2", payment_id="PAY-2", order_id="ORD-2", reason="declined")
    fold(log.events[3:], mem)
    p = mem.get(PAYMENTS, (TENANT, "PAY-2"))
    assert p is not None and (p["status"], p["failure_reason"]) == ("failed", "declined")
    assert p["failed_at"] is not None


def test_products_stock() -> None:
    log = Log()
    catalog(log)
    log.add("StockReceived", "PROD-001", product_id="PROD-001", quantity=10)
    log.add("StockReserved", "PROD-001", product_id="PROD-001", order_id="ORD-1", quantity=3)
    log.add(
        "ReservationRejected", "PROD-001", product_id="PROD-001", order_id="ORD-2", requested=50, available=7
    )
    log.add("StockReleased", "PROD-001", product_id="PROD-001", order_id="ORD-1", quantity=1)
    price = log.add(
        "ProductPriceChanged",
        "PROD-001",
        product_id="PROD-001",
        old_price_minor=1299,
        price_minor=1499,
        currency="USD",
    )
    mem = fold(log.events)
    p = mem.get(PRODUCTS, (TENANT, "PROD-001"))
    assert p is not None
    assert (p["on_hand"], p["reserved"], p["price_minor"], p["category"]) == (10, 2, 1499, "kitchen")
    assert p["version"] == price.position


def test_users() -> None:
    log = Log()
    catalog(log)
    u = fold(log.events).get(USERS, (TENANT, "USR-00001"))
    assert u is not None and (u["name"], u["email"], u["region"], u["registered_at"]) == (
        "Ann",
        "a@x.io",
        "EU",
        log.events[2].occurred_at,
    )


def test_sessions_funnel_and_pages() -> None:
    log = Log()
    sid = "SES-1"
    log.add("PageViewed", sid, session_id=sid, user_id=None, page_url="/", product_id=None)
    log.add(
        "ElementClicked", sid, session_id=sid, user_id="USR-00001", page_url="/p/1", product_id="PROD-001"
    )
    log.add("PageViewed", sid, session_id=sid, user_id="USR-00001", page_url="/", product_id=None)
    mem = fold(log.events)
    s = mem.get(SESSIONS, (TENANT, sid))
    assert s is not None
    assert (s["event_count"], s["pages"], s["funnel_stage"], s["is_conversion"], s["user_id"]) == (
        3,
        ["/", "/p/1"],
        "engaged",
        0,
        "USR-00001",
    )
    log.add(
        "ItemAddedToCart", sid, session_id=sid, user_id="USR-00001", page_url="/cart", product_id="PROD-001"
    )
    log.add(
        "CheckoutStarted", sid, session_id=sid, user_id="USR-00001", page_url="/checkout", product_id=None
    )
    log.add("PageViewed", sid, session_id=sid, user_id="USR-00001", page_url="/", product_id=None)
    fold(log.events[3:], mem)
    s = mem.get(SESSIONS, (TENANT, sid))
    assert s is not None
    assert (s["funnel_stage"], s["is_conversion"], s["event_count"]) == ("checkout", 1, 6)
    assert s["started_at"] == log.events[0].occurred_at and s["last_event_at"] == log.events[-1].occurred_at


def test_session_out_of_order_timestamps() -> None:
    log = Log()
    log.add(
        "PageViewed",
        "S",
        at=T0 + timedelta(minutes=5),
        session_id="S",
        user_id=None,
        page_url="/a",
        product_id=None,
    )
    log.add("PageViewed", "S", at=T0, session_id="S", user_id=None, page_url="/b", product_id=None)
    s = fold(log.events).get(SESSIONS, (TENANT, "S"))
    assert s is not None and s["started_at"] == T0 and s["last_event_at"] == T0 + timedelta(minutes=5)


def test_replay_is_idempotent() -> None:
    log = Log()
    catalog(log)
    place(log)
    log.add("OrderCancelled", "ORD-20240501-0001", order_id="ORD-20240501-0001", reason="x")
    log.add("StockReceived", "PROD-001", product_id="PROD-001", quantity=10)
    log.add("PageViewed", "S", session_id="S", user_id=None, page_url="/", product_id=None)
    log.add(
        "PaymentInitiated",
        "PAY-1",
        payment_id="PAY-1",
        order_id="O",
        amount_minor=1,
        currency="USD",
        method="card",
    )
    mem = fold(log.events)
    snapshot = {t: dict(rows) for t, rows in mem.tables.items()}
    for e in log.events:  # replay everything: per-stream rows are skipped (keyed rows are rewritten as is)
        assert [c.table for c in project(e, mem) if c.table not in (EVENTS, STOCK_MOVEMENTS)] == []
    fold(log.events, mem)
    assert mem.tables == snapshot


def test_partial_replay_after_crash_between_tables() -> None:
    """orders written, order_lines not: replaying the batch fills order_lines only."""
    log = Log()
    catalog(log)
    placed = place(log)
    mem = fold(log.events)
    mem.tables[ORDER_LINES].clear()
    changes = changes_of(placed, mem)
    assert ORDERS not in changes
    assert len(changes[ORDER_LINES]) == 2


def test_timestamps_are_utc_milliseconds() -> None:
    log = Log()
    odd = datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    log.add("UserRegistered", "U", at=odd, user_id="U", name="", email="", region="")
    u = fold(log.events).get(USERS, (TENANT, "U"))
    assert u is not None and u["registered_at"] == datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
    assert u["registered_at"].utcoffset() == timedelta(0)


def test_lookup_keys_cover_what_project_reads() -> None:
    log = Log()
    catalog(log)
    placed = place(log)
    seen: list[tuple[str, tuple[Any, ...]]] = []

    class Recording(MemoryLookup):
        def get(self, table: str, key: tuple[Any, ...]) -> dict[str, Any] | None:
            seen.append((table, key))
            return super().get(table, key)

    project(placed, Recording())
    assert set(seen) <= set(lookup_keys(placed))


def test_tenants_are_isolated() -> None:
    a, b = Log("a"), Log("b")
    catalog(a)
    catalog(b)
    mem = fold(a.events)
    fold(b.events, mem)  # same positions, other tenant: nothing skipped
    assert mem.get(USERS, ("a", "USR-00001")) is not None and mem.get(USERS, ("b", "USR-00001")) is not None


# --- fold_entity ------------------------------------------------------------------------------


def test_fold_entity_order_and_product() -> None:
    log = Log()
    catalog(log)
    log.add("StockReceived", "PROD-001", product_id="PROD-001", quantity=5)
    log.add("StockReserved", "PROD-001", product_id="PROD-001", order_id="ORD-20240501-0001", quantity=2)
    placed = place(log)
    order = fold_entity("order", "ORD-20240501-0001", log.events)
    assert order is not None
    assert order["total_amount"] == 45.98 and order["currency"] == "USD" and order["status"] == "pending"
    assert order["created_at"] == placed.occurred_at
    assert order["lines"][0] == {"product_id": "PROD-001", "quantity": 2, "unit_price": 12.99}
    product = fold_entity("product", "PROD-001", log.events)
    assert product == {
        "product_id": "PROD-001",
        "name": "Mug",
        "category": "kitchen",
        "price": 12.99,
        "currency": "USD",
        "in_stock": True,
        "stock_quantity": 3,
        "on_hand": 5,
        "reserved": 2,
    }
    assert fold_entity("order", "ORD-none", log.events) is None
    assert fold_entity("widget", "x", log.events) is None


def test_fold_entity_user_aggregates() -> None:
    log = Log()
    catalog(log)
    place(log, "ORD-1")
    place(log, "ORD-2")
    place(log, "ORD-3", currency="EUR")
    log.add("OrderCancelled", "ORD-2", order_id="ORD-2", reason="x")
    log.add(
        "OrderRefunded",
        "ORD-1",
        order_id="ORD-1",
        amount_minor=598,
        currency="USD",
        refunded_total_minor=598,
        full=False, lines=[], restock=False
    )
    user = fold_entity("user", "USR-00001", log.events)
    assert user is not None
    assert user["total_orders"] == 2
    assert user["spent_by_currency"] == {"EUR": 45.98, "USD": 40.0}
    assert user["currency"] == "EUR" and user["total_spent"] == 45.98  # one order each: larger spend wins
    assert user["preferred_category"] == "kitchen"  # 4 units vs 2
    assert (
        user["first_order_at"] == log.events[3].occurred_at
        and user["last_order_at"] == log.events[5].occurred_at
    )


def test_fold_entity_user_without_orders() -> None:
    log = Log()
    catalog(log)
    user = fold_entity("user", "USR-00001", log.events)
    assert user is not None
    assert (
        user["total_orders"],
        user["total_spent"],
        user["preferred_category"],
        user["first_order_at"],
    ) == (0, 0.0, "", None)


def test_fold_entity_session_matches_domain_definition() -> None:
    from domain.session import fold_session

    log = Log()
    sid = "SES-9"
    log.add("PageViewed", sid, session_id=sid, user_id="U", page_url="/", product_id=None)
    log.add("ItemAddedToCart", sid, session_id=sid, user_id="U", page_url="/p", product_id="P")
    log.add("PageViewed", sid, session_id=sid, user_id="U", page_url="/p", product_id=None)
    found = fold_entity_row("session", sid, log.events)
    assert found is not None
    assert found.data == fold_session(log.events)
    assert found.version == 3


def test_fold_entity_rejects_mixed_tenants() -> None:
    a, b = Log("a"), Log("b")
    catalog(a)
    catalog(b)
    with pytest.raises(ValueError):
        fold_entity("user", "USR-00001", a.events + b.events)

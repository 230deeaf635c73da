from __future__ import annotations

from typing import Any

import pytest

from domain import multi_aggregate
from domain.base import Aggregate, make_event
from domain.errors import DomainError
from domain.events import EVENT_TYPES, NewEvent
from domain.order import Order, OrderLine, ReturnLine
from domain.payment import Payment
from domain.product import Product
from domain.user import User

OID = "ORD-20240101-0001"


def fold(agg: Aggregate, events: list[NewEvent]) -> None:
    for e in events:
        agg.apply(e)


def code(exc: pytest.ExceptionInfo[DomainError]) -> str:
    return exc.value.code


def product(pid: str = "PROD-001", stock: int = 10, currency: str = "USD", price: int = 1000) -> Product:
    p = Product()
    fold(p, p.decide_register(pid, "Widget", "tools", price, currency))
    if stock:
        fold(p, p.decide_restock(stock))
    return p


def user(uid: str = "USR-00001") -> User:
    u = User()
    fold(u, u.decide_register(uid, "Ann", "ann@example.com", "eu"))
    return u


def placed(lines: list[OrderLine] | None = None, currency: str = "USD") -> Order:
    o = Order()
    fold(o, o.decide_place(OID, "USR-00001", currency, "web", lines or [OrderLine("PROD-001", 2, 1500)]))
    return o


def paid(order: Order, amount: int | None = None, pid: str = "PAY-1") -> Order:
    fold(order, order.decide_capture(pid, order.total_minor if amount is None else amount, order.currency))
    return order


# ------------------------------------------------------------------ events


def test_make_event_checks_catalogue() -> None:
    e = make_event("OrderConfirmed", OID, {"order_id": OID})
    assert (e.stream_type, e.schema_version) == ("order", 1)
    assert (
        make_event("OrderPlaced", OID, {f: None for f in EVENT_TYPES["OrderPlaced"][2]}).schema_version == 2
    )
    with pytest.raises(ValueError, match="fields"):
        make_event("OrderConfirmed", OID, {"order_id": OID, "extra": 1})
    with pytest.raises(ValueError, match="unknown"):
        make_event("Nope", OID, {})


# ------------------------------------------------------------------ order


def test_order_total_is_sum_of_lines() -> None:
    o = Order()
    [e] = o.decide_place(OID, "U", "USD", "web", [OrderLine("A", 3, 199), OrderLine("B", 1, 1001)])
    assert e.data["total_minor"] == 3 * 199 + 1001
    assert e.data["lines"][0] == {"product_id": "A", "quantity": 3, "unit_price_minor": 199}
    fold(o, [e])
    assert (o.status, o.total_minor, o.outstanding_minor) == ("pending", 1598, 1598)


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([], "empty_order"),
        ([OrderLine("A", 0, 100)], "quantity_out_of_range"),
        ([OrderLine("A", 1001, 100)], "quantity_out_of_range"),
        ([OrderLine("A", -1, 100)], "quantity_out_of_range"),
        ([OrderLine("A", 1, 100), OrderLine("A", 2, 100)], "duplicate_line"),
        ([OrderLine("A", 1, -5)], "invalid_amount"),
        ([OrderLine(f"P{i}", 1, 1) for i in range(101)], "quantity_out_of_range"),
    ],
)
def test_order_line_invariants(lines: list[OrderLine], expected: str) -> None:
    with pytest.raises(DomainError) as exc:
        Order().decide_place(OID, "U", "USD", None, lines)
    assert code(exc) == expected


def test_order_quantity_bounds_are_inclusive() -> None:
    Order().decide_place(OID, "U", "USD", None, [OrderLine("A", 1, 1), OrderLine("B", 1000, 1)])


def test_order_cannot_be_placed_twice() -> None:
    with pytest.raises(DomainError) as exc:
        placed().decide_place(OID, "U", "USD", None, [OrderLine("A", 1, 1)])
    assert code(exc) == "already_exists"


def test_order_happy_lifecycle() -> None:
    o = placed()
    fold(o, o.decide_confirm())
    paid(o)
    fold(o, o.decide_ship())
    fold(o, o.decide_deliver())
    assert o.status == "delivered"
    assert o.paid_minor == 3000


def test_ship_rules() -> None:
    o = placed()
    with pytest.raises(DomainError) as exc:
        o.decide_ship()  # pending
    assert code(exc) == "order_not_shippable"
    fold(o, o.decide_confirm())
    with pytest.raises(DomainError) as exc:
        o.decide_ship()  # unpaid
    assert code(exc) == "order_not_paid"
    paid(o, 1000)
    with pytest.raises(DomainError) as exc:
        o.decide_ship()  # partly paid
    assert code(exc) == "order_not_paid"
    c = placed()
    fold(c, c.decide_cancel("changed mind"))
    with pytest.raises(DomainError) as exc:
        c.decide_ship()
    assert code(exc) == "order_not_shippable"


def test_deliver_only_from_shipped_and_confirm_only_from_pending() -> None:
    o = placed()
    with pytest.raises(DomainError) as exc:
        o.decide_deliver()
    assert code(exc) == "invalid_transition"
    fold(o, o.decide_confirm())
    with pytest.raises(DomainError) as exc:
        o.decide_confirm()
    assert code(exc) == "invalid_transition"


@pytest.mark.parametrize("path", [[], ["confirm"]])
def test_cancel_allowed_from_pending_and_confirmed(path: list[str]) -> None:
    o = placed()
    if path:
        fold(o, o.decide_confirm())
    [e] = o.decide_cancel("r")
    assert e.data == {"order_id": OID, "reason": "r"}


@pytest.mark.parametrize(
    "path", [["confirm", "pay", "ship"], ["confirm", "pay", "ship", "deliver"], ["cancel"]]
)
def test_cancel_refused_after_shipping_or_cancel(path: list[str]) -> None:
    o = placed()
    for step in path:
        if step == "pay":
            paid(o)
        elif step == "cancel":
            fold(o, o.decide_cancel("x"))
        else:
            fold(o, getattr(o, f"decide_{step}")())
    with pytest.raises(DomainError) as exc:
        o.decide_cancel("again")
    assert code(exc) == "order_not_cancellable"


def test_capture_rules() -> None:
    o = placed()
    with pytest.raises(DomainError) as exc:
        o.decide_capture("P", 100, "EUR")
    assert code(exc) == "currency_mismatch"
    with pytest.raises(DomainError) as exc:
        o.decide_capture("P", 3001, "USD")
    assert code(exc) == "payment_exceeds_outstanding"
    paid(o, 1000)
    paid(o, 2000, "PAY-2")
    assert o.outstanding_minor == 0
    with pytest.raises(DomainError) as exc:
        o.decide_capture("P", 1, "USD")
    assert code(exc) == "payment_exceeds_outstanding"
    c = placed()
    fold(c, c.decide_cancel("x"))
    with pytest.raises(DomainError) as exc:
        c.check_payable(100, "USD")
    assert code(exc) == "order_not_payable"


def test_refund_rules_and_status() -> None:
    o = placed()
    with pytest.raises(DomainError) as exc:
        o.decide_refund(1)  # nothing paid
    assert code(exc) == "refund_exceeds_paid"
    paid(o)
    with pytest.raises(DomainError) as exc:
        o.decide_refund(3001)
    assert code(exc) == "refund_exceeds_paid"
    with pytest.raises(DomainError) as exc:
        o.decide_refund(0)
    assert code(exc) == "invalid_amount"
    [partial] = o.decide_refund(1000)
    assert partial.data["full"] is False and partial.data["refunded_total_minor"] == 1000
    fold(o, [partial])
    assert (o.status, o.paid_minor) == ("pending", 2000)
    with pytest.raises(DomainError):
        o.decide_refund(2001)
    [rest] = o.decide_refund(2000)
    assert rest.data["full"] is True and rest.data["refunded_total_minor"] == 3000
    fold(o, [rest])
    assert (o.status, o.paid_minor) == ("refunded", 0)


def test_decide_does_not_mutate_state() -> None:
    o = paid(placed())
    before = vars(o).copy()
    o.decide_refund(100)
    o.decide_confirm()
    o.decide_cancel("x")
    assert vars(o) == before


# ------------------------------------------------------------------ product


def test_product_stock_and_reservations() -> None:
    p = product(stock=5)
    fold(p, p.decide_reserve("O1", 3))
    assert (p.on_hand, p.reserved, p.available) == (5, 3, 2)
    with pytest.raises(DomainError) as exc:
        p.decide_reserve("O2", 3)
    assert code(exc) == "insufficient_stock"
    assert exc.value.details == {"product_id": "PROD-001", "requested": 3, "available": 2}
    fold(p, p.decide_reserve("O2", 2))
    assert p.available == 0
    with pytest.raises(DomainError) as exc:
        p.decide_release("O1", 4)
    assert code(exc) == "release_exceeds_reserved"
    with pytest.raises(DomainError) as exc:
        p.decide_release("O9", 1)
    assert code(exc) == "release_exceeds_reserved"
    fold(p, p.decide_release("O1", 3))
    assert (p.reserved, p.available, p.reservations) == (2, 3, {"O2": 2})
    fold(p, p.decide_restock(10))
    assert p.available == 13


@pytest.mark.parametrize("qty", [0, -3, 1_000_001])
def test_restock_range(qty: int) -> None:
    with pytest.raises(DomainError) as exc:
        product().decide_restock(qty)
    assert code(exc) == "quantity_out_of_range"


def test_product_register_and_price() -> None:
    p = product(price=999)
    with pytest.raises(DomainError) as exc:
        p.decide_register("PROD-001", "x", "y", 1, "USD")
    assert code(exc) == "already_exists"
    [e] = p.decide_change_price(1299)
    assert e.data == {
        "product_id": "PROD-001",
        "old_price_minor": 999,
        "price_minor": 1299,
        "currency": "USD",
    }
    fold(p, [e])
    assert p.price_minor == 1299


def test_clone_isolates_containers() -> None:
    p = product()
    fold(p, p.decide_reserve("O1", 1))
    c = p.clone()
    fold(c, c.decide_reserve("O2", 1))
    assert p.reservations == {"O1": 1} and c.reservations == {"O1": 1, "O2": 1}
    assert p.reserved == 1


# ------------------------------------------------------------------ user


def test_user_register_once() -> None:
    u = user()
    assert (u.exists, u.email) == (True, "ann@example.com")
    with pytest.raises(DomainError) as exc:
        u.decide_register("USR-00001", None, None, None)
    assert code(exc) == "already_exists"


# ------------------------------------------------------------------ payment


def initiated(amount: int = 3000) -> Payment:
    p = Payment()
    fold(p, p.decide_initiate("PAY-1", OID, amount, "USD", "card"))
    return p


def test_payment_transitions() -> None:
    p = initiated()
    fold(p, p.decide_complete())
    assert p.status == "completed"
    with pytest.raises(DomainError) as exc:
        p.decide_complete()
    assert code(exc) == "payment_not_completable"
    with pytest.raises(DomainError) as exc:
        p.decide_fail("late")
    assert code(exc) == "payment_not_failable"
    f = initiated()
    fold(f, f.decide_fail("declined"))
    assert f.status == "failed"
    with pytest.raises(DomainError) as exc:
        f.decide_complete()
    assert code(exc) == "payment_not_completable"
    with pytest.raises(DomainError) as exc:
        f.decide_refund(1)
    assert code(exc) == "payment_not_refundable"


def test_payment_refunds() -> None:
    p = initiated()
    fold(p, p.decide_complete())
    fold(p, p.decide_refund(1000))
    assert (p.status, p.refundable_minor) == ("completed", 2000)
    with pytest.raises(DomainError) as exc:
        p.decide_refund(2001)
    assert code(exc) == "refund_exceeds_paid"
    fold(p, p.decide_refund(2000))
    assert (p.status, p.refundable_minor) == ("refunded", 0)


def test_payment_initiate_rules() -> None:
    with pytest.raises(DomainError) as exc:
        Payment().decide_initiate("P", OID, 0, "USD", "card")
    assert code(exc) == "invalid_amount"
    with pytest.raises(DomainError) as exc:
        initiated().decide_initiate("PAY-1", OID, 1, "USD", "card")
    assert code(exc) == "already_exists"


# ------------------------------------------------------------------ multi-aggregate decisions


def test_place_order_reserves_each_product() -> None:
    products = {"PROD-001": product("PROD-001", 5), "PROD-002": product("PROD-002", 1)}
    lines = [OrderLine("PROD-001", 2, 1000), OrderLine("PROD-002", 1, 500)]
    events = multi_aggregate.place_order(Order(), OID, user(), "USR-00001", products, "USD", "web", lines)
    assert [(e.stream_id, e.event_type) for e in events] == [
        (OID, "OrderPlaced"),
        ("PROD-001", "StockReserved"),
        ("PROD-002", "StockReserved"),
    ]
    assert events[1].data == {"product_id": "PROD-001", "order_id": OID, "quantity": 2}


def test_place_order_rejections() -> None:
    def attempt(**over: Any) -> str:
        args: dict[str, Any] = {
            "order": Order(),
            "order_id": OID,
            "user": user(),
            "user_id": "USR-00001",
            "products": {"PROD-001": product(stock=2)},
            "currency": "USD",
            "channel": None,
            "lines": [OrderLine("PROD-001", 2, 100)],
        }
        args.update(over)
        with pytest.raises(DomainError) as exc:
            multi_aggregate.place_order(**args)
        return exc.value.code

    assert attempt(user=User()) == "unknown_user"
    assert attempt(products={}) == "unknown_product"
    assert attempt(currency="EUR") == "currency_mismatch"
    assert attempt(lines=[OrderLine("PROD-001", 3, 100)]) == "insufficient_stock"
    assert attempt(order=placed()) == "already_exists"


def test_insufficient_stock_lists_every_shortage() -> None:
    products = {"A": product("A", 1), "B": product("B", 0), "C": product("C", 9)}
    lines = [OrderLine("A", 2, 1), OrderLine("B", 1, 1), OrderLine("C", 1, 1)]
    with pytest.raises(DomainError) as exc:
        multi_aggregate.place_order(Order(), OID, user(), "U", products, "USD", None, lines)
    assert exc.value.details is not None
    assert [s["product_id"] for s in exc.value.details["shortages"]] == ["A", "B"]


def test_cancel_releases_what_is_still_reserved() -> None:
    p1, p2 = product("PROD-001", 5), product("PROD-002", 5)
    o = placed([OrderLine("PROD-001", 2, 100), OrderLine("PROD-002", 3, 100)])
    fold(p1, p1.decide_reserve(OID, 2))
    fold(p2, p2.decide_reserve(OID, 3))
    fold(p2, p2.decide_release(OID, 1))  # released by hand earlier
    events = multi_aggregate.cancel_order(o, {"PROD-001": p1, "PROD-002": p2}, "oops")
    assert [(e.event_type, e.stream_id, e.data.get("quantity")) for e in events] == [
        ("OrderCancelled", OID, None),
        ("StockReleased", "PROD-001", 2),
        ("StockReleased", "PROD-002", 2),
    ]


def test_initiate_and_complete_payment_flow() -> None:
    o = placed()
    with pytest.raises(DomainError) as exc:
        multi_aggregate.initiate_payment(Payment(), "PAY-1", Order(), "ORD-X", 100, "USD", "card")
    assert code(exc) == "unknown_order"
    with pytest.raises(DomainError) as exc:
        multi_aggregate.initiate_payment(Payment(), "PAY-1", o, OID, 100, "EUR", "card")
    assert code(exc) == "currency_mismatch"
    with pytest.raises(DomainError) as exc:
        multi_aggregate.initiate_payment(Payment(), "PAY-1", o, OID, 3001, "USD", "card")
    assert code(exc) == "payment_exceeds_outstanding"
    p = Payment()
    fold(p, multi_aggregate.initiate_payment(p, "PAY-1", o, OID, 3000, "USD", "card"))
    events = multi_aggregate.complete_payment(p, o)
    assert [e.event_type for e in events] == ["PaymentCompleted", "OrderPaymentCaptured"]
    assert events[1].data == {"order_id": OID, "payment_id": "PAY-1", "amount_minor": 3000, "currency": "USD"}


def test_refund_order_allocates_across_captured_payments() -> None:
    o = placed()
    p1, p2 = initiated(1000), Payment()
    fold(p2, p2.decide_initiate("PAY-2", OID, 2000, "USD", "card"))
    for p in (p1, p2):
        fold(p, p.decide_complete())
        paid(o, p.amount_minor, p.payment_id)
    events = multi_aggregate.refund_order(o, {"PAY-1": p1, "PAY-2": p2}, 1500)
    assert [(e.event_type, e.stream_id, e.data["amount_minor"]) for e in events] == [
        ("OrderRefunded", OID, 1500),
        ("PaymentRefunded", "PAY-1", 1000),
        ("PaymentRefunded", "PAY-2", 500),
    ]
    with pytest.raises(DomainError) as exc:
        multi_aggregate.refund_order(o, {"PAY-1": p1}, 1500)  # PAY-2 missing: cannot cover
    assert code(exc) == "refund_exceeds_paid"


def test_refund_payment_pairs_with_order() -> None:
    o = placed()
    p = initiated()
    fold(p, p.decide_complete())
    paid(o)
    events = multi_aggregate.refund_payment(p, o, 3000)
    assert [e.event_type for e in events] == ["PaymentRefunded", "OrderRefunded"]
    assert events[1].data["full"] is True


def test_shipping_consumes_the_reservation_and_falls_back_on_free_stock() -> None:
    p1, p2 = product("PROD-001", 5), product("PROD-002", 5)
    o = paid(placed([OrderLine("PROD-001", 2, 100), OrderLine("PROD-002", 3, 100)]))
    fold(p1, p1.decide_reserve(OID, 2))
    fold(p2, p2.decide_reserve(OID, 3))
    fold(p2, p2.decide_release(OID, 1))  # released by hand: 1 of the 3 comes from free stock
    fold(o, o.decide_confirm())
    events = multi_aggregate.ship_order(o, {"PROD-001": p1, "PROD-002": p2})
    moves = [(e.event_type, e.stream_id, e.data.get("quantity"), e.data.get("from_reserved")) for e in events]
    assert moves == [
        ("StockShipped", "PROD-001", 2, 2),
        ("StockShipped", "PROD-002", 3, 2),
        ("OrderShipped", OID, None, None),
    ]
    for p in (p1, p2):
        fold(p, [e for e in events if e.stream_id == p.product_id])
    assert (p1.on_hand, p1.reserved, p1.reservations) == (3, 0, {})
    assert (p2.on_hand, p2.reserved, p2.reservations) == (2, 0, {})


def test_shipping_refused_when_free_stock_cannot_cover_a_released_reservation() -> None:
    p = product(stock=3)
    fold(p, p.decide_reserve(OID, 3))
    fold(p, p.decide_release(OID, 3))
    fold(p, p.decide_reserve("OTHER", 3))  # someone else holds the units now
    with pytest.raises(DomainError) as exc:
        p.decide_ship(OID, 3)
    assert code(exc) == "insufficient_stock"


def test_returns_only_after_shipment_and_at_most_what_shipped() -> None:
    o = paid(placed([OrderLine("PROD-001", 2, 100)]))
    back = [ReturnLine("PROD-001", 1)]
    with pytest.raises(DomainError) as exc:
        o.decide_refund(50, back, True)
    assert code(exc) == "return_before_shipment"
    fold(o, o.decide_confirm())
    fold(o, o.decide_ship())
    for lines, expected in [
        ([ReturnLine("PROD-001", 3)], "return_exceeds_shipped"),
        ([ReturnLine("PROD-009", 1)], "unknown_order_line"),
        ([ReturnLine("PROD-001", 1), ReturnLine("PROD-001", 1)], "duplicate_line"),
        ([ReturnLine("PROD-001", 0)], "return_exceeds_shipped"),
    ]:
        with pytest.raises(DomainError) as exc:
            o.decide_refund(50, lines, True)
        assert code(exc) == expected, lines
    fold(o, o.decide_refund(50, back, True))
    assert o.returned == {"PROD-001": 1}
    with pytest.raises(DomainError) as exc:
        o.decide_refund(50, [ReturnLine("PROD-001", 2)], True)
    assert code(exc) == "return_exceeds_shipped"  # one came back already


def test_refund_with_returns_brings_units_back_into_stock_or_not() -> None:
    p = product(stock=5)
    pay = initiated(200)
    fold(pay, pay.decide_complete())
    o = paid(placed([OrderLine("PROD-001", 2, 100)]), 200, pay.payment_id)
    fold(p, p.decide_reserve(OID, 2))
    fold(o, o.decide_confirm())
    shipped = multi_aggregate.ship_order(o, {"PROD-001": p})
    fold(p, shipped[:1])
    fold(o, shipped[1:])
    assert p.on_hand == 3
    events = multi_aggregate.refund_order(o, {pay.payment_id: pay}, 100, {"PROD-001": p},
                                          [ReturnLine("PROD-001", 1)], restock=True)
    refunded, returned = events[0], events[-1]
    assert refunded.data["lines"] == [{"product_id": "PROD-001", "quantity": 1}] and refunded.data["restock"]
    assert (returned.event_type, returned.data["restocked"]) == ("StockReturned", True)
    fold(p, [returned])
    assert p.on_hand == 4
    written_off = p.decide_return(OID, 1, restock=False)
    fold(p, written_off)
    assert p.on_hand == 4  # damaged: counted as returned, not sellable


def test_adjustments_never_fall_below_what_is_reserved() -> None:
    p = product(stock=10)
    fold(p, p.decide_reserve(OID, 6))
    fold(p, p.decide_adjust(-4, "shrinkage"))
    assert (p.on_hand, p.reserved) == (6, 6)
    refusals = [(-1, "damage", "stock_below_reserved"), (0, "count", "invalid_adjustment"),
                (2, "theft", "invalid_adjustment"), (1_000_001, "count", "invalid_adjustment")]
    for delta, reason, expected in refusals:
        with pytest.raises(DomainError) as exc:
            p.decide_adjust(delta, reason)
        assert code(exc) == expected, (delta, reason)
    fold(p, p.decide_adjust(3, "count"))
    assert (p.on_hand, p.available) == (9, 3)

"""Order commands: place, confirm, cancel, ship, deliver, refund (with stock: domain/multi_aggregate.py)."""

from __future__ import annotations

from typing import Any

from commands.specs.base import (
    Aggregates,
    CommandSpec,
    NewId,
    Prepared,
    existing,
    plain,
    refund,
    returned_products,
    with_reason,
)
from commands.validation import Fields, minor_for
from domain import ids
from domain.events import ORDER, NewEvent
from domain.multi_aggregate import cancel_order, place_order, refund_order, ship_order
from domain.order import MAX_LINES, Order, OrderLine
from domain.payment import Payment
from domain.product import Product
from domain.user import User

MAX_CHANNEL = 50


def _prep_place(entity_id: str | None, f: Fields, new_id: NewId) -> Prepared:
    order_id = f.ident("order_id", required=False)
    user_id = f.ident("user_id")
    currency = f.currency()
    channel = f.text("channel", required=False, max_len=MAX_CHANNEL)
    lines = []
    for lf in f.objects("lines", min_items=1, max_items=MAX_LINES):
        product_id = lf.ident("product_id")
        quantity = lf.integer("quantity")
        unit_price = lf.amount("unit_price", currency)
        if product_id is not None and quantity is not None and unit_price is not None:
            lines.append(OrderLine(product_id, quantity, unit_price))
    f.raise_if_invalid()
    return Prepared(order_id or new_id(ids.ORDER_KIND),
                    {"user_id": user_id, "currency": currency, "channel": channel or "web", "lines": lines})


def _place(agg: Aggregates, oid: str, a: dict[str, Any]) -> list[NewEvent]:
    order = agg.load(Order, oid)
    user = agg.load(User, a["user_id"])
    lines: list[OrderLine] = a["lines"]
    products = {line.product_id: agg.load(Product, line.product_id) for line in lines}
    return place_order(order, oid, user, a["user_id"], products, a["currency"], a["channel"], lines)


def _confirm(agg: Aggregates, oid: str, a: dict[str, Any]) -> list[NewEvent]:
    return existing(agg, Order, oid).decide_confirm()


def _products_of(agg: Aggregates, order: Order) -> dict[str, Product]:
    return {line.product_id: agg.load(Product, line.product_id) for line in order.lines}


def _ship(agg: Aggregates, oid: str, a: dict[str, Any]) -> list[NewEvent]:
    order = existing(agg, Order, oid)
    return ship_order(order, _products_of(agg, order))


def _deliver(agg: Aggregates, oid: str, a: dict[str, Any]) -> list[NewEvent]:
    return existing(agg, Order, oid).decide_deliver()


def _cancel(agg: Aggregates, oid: str, a: dict[str, Any]) -> list[NewEvent]:
    order = existing(agg, Order, oid)
    return cancel_order(order, _products_of(agg, order), a["reason"])


def _refund(agg: Aggregates, oid: str, a: dict[str, Any]) -> list[NewEvent]:
    order = existing(agg, Order, oid)
    amount = minor_for("amount", a["amount"], order.currency)
    payments = {pid: agg.load(Payment, pid) for pid, _ in order.captures}
    return refund_order(order, payments, amount, returned_products(agg, a), a["returns"], a["restock"])


ORDER_COMMANDS: dict[str, CommandSpec] = {
    "order.place": CommandSpec(Order, True, _prep_place, _place),
    "order.confirm": CommandSpec(Order, False, plain(ORDER), _confirm),
    "order.cancel": CommandSpec(Order, False, with_reason(ORDER), _cancel),
    "order.ship": CommandSpec(Order, False, plain(ORDER), _ship),
    "order.deliver": CommandSpec(Order, False, plain(ORDER), _deliver),
    "order.refund": CommandSpec(Order, False, refund(ORDER), _refund),
}

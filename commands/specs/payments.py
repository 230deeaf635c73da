"""Payment commands: initiate, complete, fail, refund."""

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
from domain.events import PAYMENT, NewEvent
from domain.multi_aggregate import complete_payment, initiate_payment, refund_payment
from domain.order import Order
from domain.payment import PAYMENT_METHODS, Payment


def _prep_initiate(entity_id: str | None, f: Fields, new_id: NewId) -> Prepared:
    payment_id = f.ident("payment_id", required=False)
    order_id = f.ident("order_id")
    currency = f.currency()
    amount = f.amount("amount", currency, allow_zero=False)
    method = f.choice("method", PAYMENT_METHODS)
    f.raise_if_invalid()
    return Prepared(payment_id or new_id(ids.PAYMENT_KIND),
                    {"order_id": order_id, "amount_minor": amount, "currency": currency, "method": method})


def _initiate(agg: Aggregates, pid: str, a: dict[str, Any]) -> list[NewEvent]:
    payment = agg.load(Payment, pid)
    order = agg.load(Order, a["order_id"])
    return initiate_payment(payment, pid, order, a["order_id"], a["amount_minor"], a["currency"],
                                  a["method"])


def _complete(agg: Aggregates, pid: str, a: dict[str, Any]) -> list[NewEvent]:
    payment = existing(agg, Payment, pid)
    return complete_payment(payment, agg.load(Order, payment.order_id))


def _fail(agg: Aggregates, pid: str, a: dict[str, Any]) -> list[NewEvent]:
    return existing(agg, Payment, pid).decide_fail(a["reason"])


def _refund(agg: Aggregates, pid: str, a: dict[str, Any]) -> list[NewEvent]:
    payment = existing(agg, Payment, pid)
    amount = minor_for("amount", a["amount"], payment.currency)
    return refund_payment(payment, agg.load(Order, payment.order_id), amount,
                                returned_products(agg, a), a["returns"], a["restock"])


PAYMENT_COMMANDS: dict[str, CommandSpec] = {
    "payment.initiate": CommandSpec(Payment, True, _prep_initiate, _initiate),
    "payment.complete": CommandSpec(Payment, False, plain(PAYMENT), _complete),
    "payment.fail": CommandSpec(Payment, False, with_reason(PAYMENT), _fail),
    "payment.refund": CommandSpec(Payment, False, refund(PAYMENT), _refund),
}

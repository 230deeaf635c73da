"""Decisions spanning several aggregates; the handler appends all their events atomically."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from domain import errors
from domain.errors import DomainError
from domain.events import NewEvent
from domain.order import Order, OrderLine, ReturnLine
from domain.payment import Payment
from domain.product import Product
from domain.user import User


def place_order(
    order: Order,
    order_id: str,
    user: User,
    user_id: str,
    products: Mapping[str, Product],
    currency: str,
    channel: str | None,
    lines: list[OrderLine],
) -> list[NewEvent]:
    """OrderPlaced plus StockReserved on every product; all-or-nothing."""
    events = order.decide_place(order_id, user_id, currency, channel, lines)
    if not user.exists:
        raise DomainError(errors.UNKNOWN_USER, f"user {user_id} is not registered", {"user_id": user_id})
    shortages: list[dict[str, Any]] = []
    for i, line in enumerate(lines):
        product = products.get(line.product_id)
        if product is None or not product.exists:
            raise DomainError(errors.UNKNOWN_PRODUCT, f"line {i}: product {line.product_id} does not exist",
                              {"line": i, "product_id": line.product_id})
        if product.currency != currency:
            raise DomainError(
                errors.CURRENCY_MISMATCH,
                f"line {i}: product {line.product_id} is priced in {product.currency}, order in {currency}",
                {"line": i, "product_id": line.product_id, "product_currency": product.currency,
                 "currency": currency},
            )
        if line.quantity > product.available:
            shortages.append({"product_id": line.product_id, "requested": line.quantity,
                              "available": product.available})
            continue
        events += product.decide_reserve(order_id, line.quantity)
    if shortages:
        first = shortages[0]
        raise DomainError(
            errors.INSUFFICIENT_STOCK,
            f"insufficient stock for {', '.join(s['product_id'] for s in shortages)}",
            {**first, "shortages": shortages},
        )
    return events


def cancel_order(order: Order, products: Mapping[str, Product], reason: str) -> list[NewEvent]:
    """OrderCancelled plus StockReleased of whatever each line still holds."""
    events = order.decide_cancel(reason)
    for line in order.lines:
        product = products.get(line.product_id)
        if product is None or not product.exists:
            continue
        held = min(line.quantity, product.reservations.get(order.order_id, 0))
        if held > 0:
            events += product.decide_release(order.order_id, held)
    return events


def ship_order(order: Order, products: Mapping[str, Product]) -> list[NewEvent]:
    """StockShipped on every line's product, then OrderShipped: the goods, and the reservation that held
    them, leave the warehouse together (the order's event last, so the command's position is its)."""
    shipped = order.decide_ship()
    events: list[NewEvent] = []
    for line in order.lines:
        product = products.get(line.product_id)
        if product is None or not product.exists:
            raise DomainError(errors.UNKNOWN_PRODUCT, f"product {line.product_id} does not exist",
                              {"product_id": line.product_id})
        events += product.decide_ship(order.order_id, line.quantity)
    return events + shipped


def _returns(
    order: Order, products: Mapping[str, Product], returns: list[ReturnLine], restock: bool
) -> list[NewEvent]:
    """StockReturned on each returned line's product (the order checked the quantities)."""
    events: list[NewEvent] = []
    for ret in returns:
        product = products.get(ret.product_id)
        if product is None or not product.exists:
            raise DomainError(errors.UNKNOWN_PRODUCT, f"product {ret.product_id} does not exist",
                              {"product_id": ret.product_id})
        events += product.decide_return(order.order_id, ret.quantity, restock)
    return events


def initiate_payment(
    payment: Payment, payment_id: str, order: Order, order_id: str, amount_minor: int, currency: str,
    method: str,
) -> list[NewEvent]:
    if not order.exists:
        raise DomainError(errors.UNKNOWN_ORDER, f"order {order_id} does not exist", {"order_id": order_id})
    events = payment.decide_initiate(payment_id, order_id, amount_minor, currency, method)
    order.check_payable(amount_minor, currency)
    return events


def complete_payment(payment: Payment, order: Order) -> list[NewEvent]:
    """PaymentCompleted plus OrderPaymentCaptured."""
    events = payment.decide_complete()
    if not order.exists:
        raise DomainError(errors.UNKNOWN_ORDER, f"order {payment.order_id} does not exist",
                          {"order_id": payment.order_id})
    return events + order.decide_capture(payment.payment_id, payment.amount_minor, payment.currency)


def refund_payment(
    payment: Payment, order: Order, amount_minor: int, products: Mapping[str, Product] | None = None,
    returns: list[ReturnLine] | None = None, restock: bool = False,
) -> list[NewEvent]:
    """PaymentRefunded plus OrderRefunded (plus StockReturned for returned lines)."""
    events = payment.decide_refund(amount_minor)
    if not order.exists:
        raise DomainError(errors.UNKNOWN_ORDER, f"order {payment.order_id} does not exist",
                          {"order_id": payment.order_id})
    events += order.decide_refund(amount_minor, returns, restock)
    return events + _returns(order, products or {}, returns or [], restock)


def refund_order(
    order: Order, payments: Mapping[str, Payment], amount_minor: int,
    products: Mapping[str, Product] | None = None, returns: list[ReturnLine] | None = None,
    restock: bool = False,
) -> list[NewEvent]:
    """OrderRefunded plus PaymentRefunded on the captured payments, oldest capture first (plus
    StockReturned for returned lines)."""
    events = order.decide_refund(amount_minor, returns, restock)
    left = amount_minor
    for payment_id in dict.fromkeys(pid for pid, _ in order.captures):
        payment = payments.get(payment_id)
        if payment is None or left == 0:
            continue
        part = min(left, payment.refundable_minor)
        if part > 0:
            events += payment.decide_refund(part)
            left -= part
    if left > 0:
        raise DomainError(errors.REFUND_EXCEEDS_PAID,
                          f"captured payments of order {order.order_id} cannot cover the refund",
                          {"order_id": order.order_id, "amount_minor": amount_minor, "uncovered_minor": left})
    return events + _returns(order, products or {}, returns or [], restock)

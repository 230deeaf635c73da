"""Order aggregate: lines, total, lifecycle status, captured and refunded money."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from domain import errors
from domain.base import Aggregate, EventLike, make_event
from domain.errors import DomainError
from domain.events import ORDER, NewEvent

PENDING = "pending"
CONFIRMED = "confirmed"
SHIPPED = "shipped"
DELIVERED = "delivered"
CANCELLED = "cancelled"
REFUNDED = "refunded"
ORDER_STATUSES = (PENDING, CONFIRMED, SHIPPED, DELIVERED, CANCELLED, REFUNDED)

CANCELLABLE = frozenset({PENDING, CONFIRMED})
# a payment may be taken while the order is live (cash on delivery included)
PAYABLE = frozenset({PENDING, CONFIRMED, SHIPPED, DELIVERED})

MIN_QUANTITY = 1
MAX_QUANTITY = 1000
MAX_LINES = 100


@dataclass(frozen=True, slots=True)
class OrderLine:
    product_id: str
    quantity: int
    unit_price_minor: int

    @property
    def line_total_minor(self) -> int:
        return self.quantity * self.unit_price_minor

    def to_data(self) -> dict[str, Any]:
        return {"product_id": self.product_id, "quantity": self.quantity,
                "unit_price_minor": self.unit_price_minor}


@dataclass(frozen=True, slots=True)
class ReturnLine:
    """Units of one product that came back with a refund."""

    product_id: str
    quantity: int

    def to_data(self) -> dict[str, Any]:
        return {"product_id": self.product_id, "quantity": self.quantity}


def order_total(lines: list[OrderLine]) -> int:
    return sum(line.line_total_minor for line in lines)


class Order(Aggregate):
    stream_type = ORDER

    def __init__(self) -> None:
        super().__init__()
        self.order_id = ""
        self.user_id = ""
        self.currency = ""
        self.channel: str | None = None
        self.lines: list[OrderLine] = []
        self.total_minor = 0
        self.status = ""
        self.captured_minor = 0
        self.refunded_minor = 0
        self.captures: list[tuple[str, int]] = []  # (payment_id, amount_minor) in capture order
        self.shipped = False  # the goods left the warehouse (stays true after delivery or a refund)
        self.returned: dict[str, int] = {}  # product_id -> units returned so far

    @property
    def paid_minor(self) -> int:
        """Captured minus refunded."""
        return self.captured_minor - self.refunded_minor

    @property
    def outstanding_minor(self) -> int:
        return self.total_minor - self.paid_minor

    # --- fold
    def _on_OrderPlaced(self, d: dict[str, Any], _e: EventLike) -> None:
        self.exists = True
        self.order_id = d["order_id"]
        self.user_id = d["user_id"]
        self.currency = d["currency"]
        self.channel = d.get("channel")
        self.lines = [OrderLine(x["product_id"], x["quantity"], x["unit_price_minor"]) for x in d["lines"]]
        self.total_minor = d["total_minor"]
        self.status = PENDING

    def _on_OrderConfirmed(self, d: dict[str, Any], _e: EventLike) -> None:
        self.status = CONFIRMED

    def _on_OrderShipped(self, d: dict[str, Any], _e: EventLike) -> None:
        self.status = SHIPPED
        self.shipped = True

    def _on_OrderDelivered(self, d: dict[str, Any], _e: EventLike) -> None:
        self.status = DELIVERED

    def _on_OrderCancelled(self, d: dict[str, Any], _e: EventLike) -> None:
        self.status = CANCELLED

    def _on_OrderPaymentCaptured(self, d: dict[str, Any], _e: EventLike) -> None:
        self.captured_minor += d["amount_minor"]
        self.captures.append((d["payment_id"], d["amount_minor"]))

    def _on_OrderRefunded(self, d: dict[str, Any], _e: EventLike) -> None:
        self.refunded_minor += d["amount_minor"]
        for line in d["lines"]:
            self.returned[line["product_id"]] = self.returned.get(line["product_id"], 0) + line["quantity"]
        if d["full"]:
            self.status = REFUNDED

    # --- decide
    def _transition_error(self, code: str, action: str) -> DomainError:
        return DomainError(code, f"order {self.order_id} is {self.status}; cannot {action}",
                           {"order_id": self.order_id, "status": self.status})

    def decide_place(
        self, order_id: str, user_id: str, currency: str, channel: str | None, lines: list[OrderLine]
    ) -> list[NewEvent]:
        if self.exists:
            raise DomainError(errors.ALREADY_EXISTS, f"order {order_id} already exists",
                              {"order_id": order_id})
        if not lines:
            raise DomainError(errors.EMPTY_ORDER, "an order needs at least one line")
        if len(lines) > MAX_LINES:
            raise DomainError(errors.QUANTITY_OUT_OF_RANGE, f"an order has at most {MAX_LINES} lines")
        seen: set[str] = set()
        for i, line in enumerate(lines):
            if not MIN_QUANTITY <= line.quantity <= MAX_QUANTITY:
                raise DomainError(
                    errors.QUANTITY_OUT_OF_RANGE,
                    f"line {i}: quantity must be {MIN_QUANTITY}-{MAX_QUANTITY}",
                    {"line": i, "product_id": line.product_id, "quantity": line.quantity},
                )
            if line.unit_price_minor < 0:
                raise DomainError(errors.INVALID_AMOUNT, f"line {i}: unit price must not be negative",
                                  {"line": i})
            if line.product_id in seen:
                raise DomainError(errors.DUPLICATE_LINE, f"product {line.product_id} appears on two lines",
                                  {"line": i, "product_id": line.product_id})
            seen.add(line.product_id)
        data = {"order_id": order_id, "user_id": user_id, "currency": currency, "channel": channel,
                "lines": [line.to_data() for line in lines], "total_minor": order_total(lines)}
        return [make_event("OrderPlaced", order_id, data)]

    def decide_confirm(self) -> list[NewEvent]:
        if self.status != PENDING:
            raise self._transition_error(errors.INVALID_TRANSITION, "confirm")
        return [make_event("OrderConfirmed", self.order_id, {"order_id": self.order_id})]

    def decide_cancel(self, reason: str) -> list[NewEvent]:
        if self.status not in CANCELLABLE:
            raise self._transition_error(errors.ORDER_NOT_CANCELLABLE, "cancel")
        return [make_event("OrderCancelled", self.order_id, {"order_id": self.order_id, "reason": reason})]

    def decide_ship(self) -> list[NewEvent]:
        if self.status != CONFIRMED:
            raise self._transition_error(errors.ORDER_NOT_SHIPPABLE, "ship (only confirmed orders ship)")
        if self.paid_minor < self.total_minor:
            raise DomainError(
                errors.ORDER_NOT_PAID,
                f"order {self.order_id} is not fully paid",
                {"order_id": self.order_id, "total_minor": self.total_minor, "paid_minor": self.paid_minor},
            )
        return [make_event("OrderShipped", self.order_id, {"order_id": self.order_id})]

    def decide_deliver(self) -> list[NewEvent]:
        if self.status != SHIPPED:
            raise self._transition_error(errors.INVALID_TRANSITION, "deliver (only shipped orders)")
        return [make_event("OrderDelivered", self.order_id, {"order_id": self.order_id})]

    def check_payable(self, amount_minor: int, currency: str) -> None:
        """A payment of this amount may be taken: live order, same currency, within the outstanding."""
        if currency != self.currency:
            raise DomainError(
                errors.CURRENCY_MISMATCH,
                f"payment currency {currency} differs from order currency {self.currency}",
                {"order_id": self.order_id, "order_currency": self.currency, "currency": currency},
            )
        if self.status not in PAYABLE:
            raise self._transition_error(errors.ORDER_NOT_PAYABLE, "take a payment")
        if amount_minor <= 0:
            raise DomainError(errors.INVALID_AMOUNT, "payment amount must be positive")
        if amount_minor > self.outstanding_minor:
            raise DomainError(
                errors.PAYMENT_EXCEEDS_OUTSTANDING,
                f"payment exceeds the outstanding amount of order {self.order_id}",
                {"order_id": self.order_id, "amount_minor": amount_minor,
                 "outstanding_minor": self.outstanding_minor},
            )

    def decide_capture(self, payment_id: str, amount_minor: int, currency: str) -> list[NewEvent]:
        self.check_payable(amount_minor, currency)
        data = {"order_id": self.order_id, "payment_id": payment_id, "amount_minor": amount_minor,
                "currency": currency}
        return [make_event("OrderPaymentCaptured", self.order_id, data)]

    def decide_refund(
        self, amount_minor: int, returns: list[ReturnLine] | None = None, restock: bool = False
    ) -> list[NewEvent]:
        """A refund, optionally naming the units that came back (only from a shipped order, at most
        what each line shipped minus what was returned before)."""
        if amount_minor <= 0:
            raise DomainError(errors.INVALID_AMOUNT, "refund amount must be positive")
        if amount_minor > self.paid_minor:
            raise DomainError(
                errors.REFUND_EXCEEDS_PAID,
                f"refund exceeds what was paid for order {self.order_id}",
                {"order_id": self.order_id, "amount_minor": amount_minor, "paid_minor": self.paid_minor},
            )
        returns = returns or []
        self.check_returnable(returns)
        refunded_total = self.refunded_minor + amount_minor
        data = {"order_id": self.order_id, "amount_minor": amount_minor, "currency": self.currency,
                "refunded_total_minor": refunded_total, "full": refunded_total >= self.captured_minor,
                "lines": [r.to_data() for r in returns], "restock": bool(returns) and restock}
        return [make_event("OrderRefunded", self.order_id, data)]

    def check_returnable(self, returns: list[ReturnLine]) -> None:
        if not returns:
            return
        if not self.shipped:
            raise DomainError(errors.RETURN_BEFORE_SHIPMENT,
                              f"order {self.order_id} has not shipped; nothing can come back",
                              {"order_id": self.order_id, "status": self.status})
        ordered = {line.product_id: line.quantity for line in self.lines}
        seen: set[str] = set()
        for i, ret in enumerate(returns):
            if ret.product_id in seen:
                raise DomainError(errors.DUPLICATE_LINE, f"product {ret.product_id} is returned on two lines",
                                  {"line": i, "product_id": ret.product_id})
            seen.add(ret.product_id)
            if ret.product_id not in ordered:
                raise DomainError(errors.UNKNOWN_ORDER_LINE,
                                  f"order {self.order_id} has no line for product {ret.product_id}",
                                  {"line": i, "order_id": self.order_id, "product_id": ret.product_id})
            left = ordered[ret.product_id] - self.returned.get(ret.product_id, 0)
            if not 1 <= ret.quantity <= left:
                raise DomainError(
                    errors.RETURN_EXCEEDS_SHIPPED,
                    f"line {i}: {ret.quantity} of {ret.product_id} cannot come back; {left} shipped and not "
                    "returned yet",
                    {"line": i, "product_id": ret.product_id, "quantity": ret.quantity, "returnable": left},
                )

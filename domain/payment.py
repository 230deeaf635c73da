"""Payment aggregate: initiated -> completed | failed; completed -> refunded when fully refunded."""

from __future__ import annotations

from typing import Any

from domain import errors
from domain.base import Aggregate, EventLike, make_event
from domain.errors import DomainError
from domain.events import PAYMENT, NewEvent

INITIATED = "initiated"
COMPLETED = "completed"
FAILED = "failed"
REFUNDED = "refunded"
PAYMENT_STATUSES = (INITIATED, COMPLETED, FAILED, REFUNDED)
PAYMENT_METHODS = ("card", "bank_transfer", "wallet")


class Payment(Aggregate):
    stream_type = PAYMENT

    def __init__(self) -> None:
        super().__init__()
        self.payment_id = ""
        self.order_id = ""
        self.amount_minor = 0
        self.currency = ""
        self.method = ""
        self.status = ""
        self.refunded_minor = 0

    @property
    def refundable_minor(self) -> int:
        return self.amount_minor - self.refunded_minor if self.status in (COMPLETED, REFUNDED) else 0

    def _on_PaymentInitiated(self, d: dict[str, Any], _e: EventLike) -> None:
        self.exists = True
        self.payment_id = d["payment_id"]
        self.order_id = d["order_id"]
        self.amount_minor = d["amount_minor"]
        self.currency = d["currency"]
        self.method = d["method"]
        self.status = INITIATED

    def _on_PaymentCompleted(self, d: dict[str, Any], _e: EventLike) -> None:
        self.status = COMPLETED

    def _on_PaymentFailed(self, d: dict[str, Any], _e: EventLike) -> None:
        self.status = FAILED

    def _on_PaymentRefunded(self, d: dict[str, Any], _e: EventLike) -> None:
        self.refunded_minor += d["amount_minor"]
        if self.refunded_minor >= self.amount_minor:
            self.status = REFUNDED

    def decide_initiate(
        self, payment_id: str, order_id: str, amount_minor: int, currency: str, method: str
    ) -> list[NewEvent]:
        if self.exists:
            raise DomainError(errors.ALREADY_EXISTS, f"payment {payment_id} already exists",
                              {"payment_id": payment_id})
        if amount_minor <= 0:
            raise DomainError(errors.INVALID_AMOUNT, "payment amount must be positive")
        data = {"payment_id": payment_id, "order_id": order_id, "amount_minor": amount_minor,
                "currency": currency, "method": method}
        return [make_event("PaymentInitiated", payment_id, data)]

    def decide_complete(self) -> list[NewEvent]:
        if self.status != INITIATED:
            raise DomainError(errors.PAYMENT_NOT_COMPLETABLE,
                              f"payment {self.payment_id} is {self.status}; only initiated payments complete",
                              {"payment_id": self.payment_id, "status": self.status})
        data = {"payment_id": self.payment_id, "order_id": self.order_id,
                "amount_minor": self.amount_minor, "currency": self.currency}
        return [make_event("PaymentCompleted", self.payment_id, data)]

    def decide_fail(self, reason: str) -> list[NewEvent]:
        if self.status != INITIATED:
            raise DomainError(errors.PAYMENT_NOT_FAILABLE,
                              f"payment {self.payment_id} is {self.status}; only initiated payments fail",
                              {"payment_id": self.payment_id, "status": self.status})
        data = {"payment_id": self.payment_id, "order_id": self.order_id, "reason": reason}
        return [make_event("PaymentFailed", self.payment_id, data)]

    def decide_refund(self, amount_minor: int) -> list[NewEvent]:
        if self.status not in (COMPLETED, REFUNDED):
            raise DomainError(errors.PAYMENT_NOT_REFUNDABLE,
                              f"payment {self.payment_id} is {self.status}; only completed payments refund",
                              {"payment_id": self.payment_id, "status": self.status})
        if amount_minor <= 0:
            raise DomainError(errors.INVALID_AMOUNT, "refund amount must be positive")
        if amount_minor > self.refundable_minor:
            raise DomainError(
                errors.REFUND_EXCEEDS_PAID,
                f"refund exceeds what is left on payment {self.payment_id}",
                {"payment_id": self.payment_id, "amount_minor": amount_minor,
                 "refundable_minor": self.refundable_minor},
            )
        data = {"payment_id": self.payment_id, "order_id": self.order_id, "amount_minor": amount_minor,
                "currency": self.currency}
        return [make_event("PaymentRefunded", self.payment_id, data)]

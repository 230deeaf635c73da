"""Domain errors: business-rule violations (HTTP 409) and unknown entities (HTTP 404)."""

from __future__ import annotations

from typing import Any

# codes
ALREADY_EXISTS = "already_exists"
INVALID_TRANSITION = "invalid_transition"
ORDER_NOT_CANCELLABLE = "order_not_cancellable"
ORDER_NOT_SHIPPABLE = "order_not_shippable"
ORDER_NOT_PAID = "order_not_paid"
ORDER_NOT_PAYABLE = "order_not_payable"
PAYMENT_EXCEEDS_OUTSTANDING = "payment_exceeds_outstanding"
REFUND_EXCEEDS_PAID = "refund_exceeds_paid"
INSUFFICIENT_STOCK = "insufficient_stock"
RELEASE_EXCEEDS_RESERVED = "release_exceeds_reserved"
STOCK_BELOW_RESERVED = "stock_below_reserved"
RETURN_BEFORE_SHIPMENT = "return_before_shipment"
RETURN_EXCEEDS_SHIPPED = "return_exceeds_shipped"
UNKNOWN_ORDER_LINE = "unknown_order_line"
INVALID_ADJUSTMENT = "invalid_adjustment"
CURRENCY_MISMATCH = "currency_mismatch"
QUANTITY_OUT_OF_RANGE = "quantity_out_of_range"
EMPTY_ORDER = "empty_order"
DUPLICATE_LINE = "duplicate_line"
INVALID_AMOUNT = "invalid_amount"
PAYMENT_NOT_COMPLETABLE = "payment_not_completable"
PAYMENT_NOT_FAILABLE = "payment_not_failable"
PAYMENT_NOT_REFUNDABLE = "payment_not_refundable"
SESSION_USER_MISMATCH = "session_user_mismatch"
UNKNOWN_PRODUCT = "unknown_product"
UNKNOWN_USER = "unknown_user"
UNKNOWN_ORDER = "unknown_order"
NOT_FOUND = "not_found"


class DomainError(Exception):
    """A business rule rejected the command (HTTP 409); nothing is appended."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


class NotFound(Exception):
    """The entity named in the URL does not exist (HTTP 404)."""

    code = NOT_FOUND

    def __init__(self, entity_type: str, entity_id: str) -> None:
        self.entity_type = entity_type
        self.entity_id = entity_id
        self.message = f"{entity_type} {entity_id} not found"
        super().__init__(self.message)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "details": {"entity_type": self.entity_type, "entity_id": self.entity_id},
        }

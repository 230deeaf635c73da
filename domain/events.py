"""Event envelopes and the catalogue of domain event types.

Events are plain dicts of JSON-safe values inside small frozen envelopes, so the
same code runs in the embedded projector and inside a Flink Python worker.
Money is always ``*_minor`` integer minor units plus an ISO ``currency``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# stream types
ORDER = "order"
PAYMENT = "payment"
PRODUCT = "product"
USER = "user"
SESSION = "session"

STREAM_TYPES = (ORDER, PAYMENT, PRODUCT, USER, SESSION)

# event type -> (stream type, current schema version, data fields)
EVENT_TYPES: dict[str, tuple[str, int, tuple[str, ...]]] = {
    # product stream (id PROD-NNN)
    "ProductRegistered": (PRODUCT, 1, ("product_id", "name", "category", "price_minor", "currency")),
    "ProductPriceChanged": (PRODUCT, 1, ("product_id", "old_price_minor", "price_minor", "currency")),
    "StockReceived": (PRODUCT, 1, ("product_id", "quantity")),
    "StockReserved": (PRODUCT, 1, ("product_id", "order_id", "quantity")),
    "StockReleased": (PRODUCT, 1, ("product_id", "order_id", "quantity")),
    "ReservationRejected": (PRODUCT, 1, ("product_id", "order_id", "requested", "available")),
    # goods leave with a shipment: on_hand falls by quantity, reserved by from_reserved (the part the
    # order held; the rest came from free stock)
    "StockShipped": (PRODUCT, 1, ("product_id", "order_id", "quantity", "from_reserved")),
    # goods come back with a refund; restocked ones are sellable again (on_hand rises)
    "StockReturned": (PRODUCT, 1, ("product_id", "order_id", "quantity", "restocked")),
    # a count, damage, shrinkage or correction (or a legacy source's quantity): on_hand += delta
    "StockAdjusted": (PRODUCT, 1, ("product_id", "delta", "reason")),
    # user stream (id USR-NNNNN)
    "UserRegistered": (USER, 1, ("user_id", "name", "email", "region")),
    # order stream (id ORD-YYYYMMDD-NNNN); lines: [{product_id, quantity, unit_price_minor}]
    "OrderPlaced": (ORDER, 2, ("order_id", "user_id", "currency", "channel", "lines", "total_minor")),
    "OrderConfirmed": (ORDER, 1, ("order_id",)),
    "OrderPaymentCaptured": (ORDER, 1, ("order_id", "payment_id", "amount_minor", "currency")),
    "OrderShipped": (ORDER, 1, ("order_id",)),
    "OrderDelivered": (ORDER, 1, ("order_id",)),
    "OrderCancelled": (ORDER, 1, ("order_id", "reason")),
    # v2: lines returned with the refund ([{product_id, quantity}], may be empty) and whether they
    # go back into stock
    "OrderRefunded": (
        ORDER, 2,
        ("order_id", "amount_minor", "currency", "refunded_total_minor", "full", "lines", "restock"),
    ),
    # payment stream (id PAY-...)
    "PaymentInitiated": (PAYMENT, 1, ("payment_id", "order_id", "amount_minor", "currency", "method")),
    "PaymentCompleted": (PAYMENT, 1, ("payment_id", "order_id", "amount_minor", "currency")),
    "PaymentFailed": (PAYMENT, 1, ("payment_id", "order_id", "reason")),
    "PaymentRefunded": (PAYMENT, 1, ("payment_id", "order_id", "amount_minor", "currency")),
    # session clickstream (id SES-...); user_id and product_id may be None
    "PageViewed": (SESSION, 1, ("session_id", "user_id", "page_url", "product_id")),
    "ElementClicked": (SESSION, 1, ("session_id", "user_id", "page_url", "product_id")),
    "ItemAddedToCart": (SESSION, 1, ("session_id", "user_id", "page_url", "product_id")),
    "CheckoutStarted": (SESSION, 1, ("session_id", "user_id", "page_url", "product_id")),
}

# API clickstream names -> event types
SESSION_EVENT_TYPES = {
    "page_view": "PageViewed",
    "click": "ElementClicked",
    "add_to_cart": "ItemAddedToCart",
    "checkout_started": "CheckoutStarted",
}


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event decided by an aggregate, not yet stored."""

    stream_type: str
    stream_id: str
    event_type: str
    data: dict[str, Any]
    schema_version: int = 1
    # None: the store assigns a random id. Set by callers that must append the same change twice
    # with the same id (CDC from legacy sources derives it from the source position).
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """An event as stored, with its global position."""

    position: int
    tenant_id: str
    stream_type: str
    stream_id: str
    stream_version: int
    event_id: str
    event_type: str
    schema_version: int
    data: dict[str, Any]
    occurred_at: datetime
    recorded_at: datetime
    transaction_id: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)

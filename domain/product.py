"""Product aggregate: catalogue data, price and stock (on hand, reserved per order).

Stock moves only through events on the product's own stream: received (restock), reserved and
released (orders placed and cancelled), shipped (the order's reservation leaves the warehouse),
returned (restocked or not) and adjusted (counts, damage, shrinkage, corrections). Always
``on_hand >= reserved >= 0``.
"""

from __future__ import annotations

from typing import Any

from domain import errors
from domain.base import Aggregate, EventLike, make_event
from domain.errors import DomainError
from domain.events import PRODUCT, NewEvent

MAX_RESTOCK = 1_000_000
# why on-hand stock was adjusted; ``legacy_sync`` is a legacy source's inventory row moving down
ADJUST_REASONS = ("count", "damage", "shrinkage", "correction", "legacy_sync")


class Product(Aggregate):
    stream_type = PRODUCT

    def __init__(self) -> None:
        super().__init__()
        self.product_id = ""
        self.name = ""
        self.category = ""
        self.price_minor = 0
        self.currency = ""
        self.on_hand = 0
        self.reserved = 0
        self.reservations: dict[str, int] = {}  # order_id -> quantity still reserved

    @property
    def available(self) -> int:
        """What can still be sold: on hand minus reserved."""
        return self.on_hand - self.reserved

    # --- fold
    def _on_ProductRegistered(self, d: dict[str, Any], _e: EventLike) -> None:
        self.exists = True
        self.product_id = d["product_id"]
        self.name = d["name"]
        self.category = d["category"]
        self.price_minor = d["price_minor"]
        self.currency = d["currency"]

    def _on_ProductPriceChanged(self, d: dict[str, Any], _e: EventLike) -> None:
        self.price_minor = d["price_minor"]

    def _on_StockReceived(self, d: dict[str, Any], _e: EventLike) -> None:
        self.on_hand += d["quantity"]

    def _on_StockReserved(self, d: dict[str, Any], _e: EventLike) -> None:
        self.reserved += d["quantity"]
        self.reservations[d["order_id"]] = self.reservations.get(d["order_id"], 0) + d["quantity"]

    def _on_StockReleased(self, d: dict[str, Any], _e: EventLike) -> None:
        self._unreserve(d["order_id"], d["quantity"])

    def _on_StockShipped(self, d: dict[str, Any], _e: EventLike) -> None:
        self.on_hand -= d["quantity"]
        self._unreserve(d["order_id"], d["from_reserved"])

    def _on_StockReturned(self, d: dict[str, Any], _e: EventLike) -> None:
        if d["restocked"]:
            self.on_hand += d["quantity"]

    def _on_StockAdjusted(self, d: dict[str, Any], _e: EventLike) -> None:
        self.on_hand += d["delta"]

    def _unreserve(self, order_id: str, quantity: int) -> None:
        self.reserved -= quantity
        left = self.reservations.get(order_id, 0) - quantity
        if left > 0:
            self.reservations[order_id] = left
        else:
            self.reservations.pop(order_id, None)

    # --- decide
    def decide_register(
        self, product_id: str, name: str, category: str, price_minor: int, currency: str
    ) -> list[NewEvent]:
        if self.exists:
            raise DomainError(errors.ALREADY_EXISTS, f"product {product_id} already exists",
                              {"product_id": product_id})
        if price_minor < 0:
            raise DomainError(errors.INVALID_AMOUNT, "price must not be negative")
        data = {"product_id": product_id, "name": name, "category": category,
                "price_minor": price_minor, "currency": currency}
        return [make_event("ProductRegistered", product_id, data)]

    def decide_change_price(self, price_minor: int) -> list[NewEvent]:
        if price_minor < 0:
            raise DomainError(errors.INVALID_AMOUNT, "price must not be negative")
        data = {"product_id": self.product_id, "old_price_minor": self.price_minor,
                "price_minor": price_minor, "currency": self.currency}
        return [make_event("ProductPriceChanged", self.product_id, data)]

    def decide_restock(self, quantity: int) -> list[NewEvent]:
        if not 1 <= quantity <= MAX_RESTOCK:
            raise DomainError(errors.QUANTITY_OUT_OF_RANGE, f"restock quantity must be 1-{MAX_RESTOCK}",
                              {"quantity": quantity})
        return [make_event("StockReceived", self.product_id,
                           {"product_id": self.product_id, "quantity": quantity})]

    def decide_reserve(self, order_id: str, quantity: int) -> list[NewEvent]:
        if quantity < 1:
            raise DomainError(errors.QUANTITY_OUT_OF_RANGE, "quantity must be positive",
                              {"quantity": quantity})
        if quantity > self.available:
            raise DomainError(
                errors.INSUFFICIENT_STOCK,
                f"{self.product_id}: requested {quantity}, available {self.available}",
                {"product_id": self.product_id, "requested": quantity, "available": self.available},
            )
        return [make_event("StockReserved", self.product_id,
                           {"product_id": self.product_id, "order_id": order_id, "quantity": quantity})]

    def decide_release(self, order_id: str, quantity: int) -> list[NewEvent]:
        held = self.reservations.get(order_id, 0)
        if quantity < 1:
            raise DomainError(errors.QUANTITY_OUT_OF_RANGE, "quantity must be positive",
                              {"quantity": quantity})
        if quantity > held:
            raise DomainError(
                errors.RELEASE_EXCEEDS_RESERVED,
                f"{self.product_id}: order {order_id} holds {held}, cannot release {quantity}",
                {"product_id": self.product_id, "order_id": order_id, "reserved": held,
                 "requested": quantity},
            )
        return [make_event("StockReleased", self.product_id,
                           {"product_id": self.product_id, "order_id": order_id, "quantity": quantity})]

    def decide_ship(self, order_id: str, quantity: int) -> list[NewEvent]:
        """The order's units leave: first what it holds, the rest (if it holds less) from free stock."""
        if quantity < 1:
            raise DomainError(errors.QUANTITY_OUT_OF_RANGE, "quantity must be positive",
                              {"quantity": quantity})
        from_reserved = min(quantity, self.reservations.get(order_id, 0))
        unreserved = quantity - from_reserved
        if unreserved > self.available:
            raise DomainError(
                errors.INSUFFICIENT_STOCK,
                f"{self.product_id}: shipping {quantity} for order {order_id}, which holds {from_reserved}; "
                f"available {self.available}",
                {"product_id": self.product_id, "requested": unreserved, "available": self.available},
            )
        return [make_event("StockShipped", self.product_id,
                           {"product_id": self.product_id, "order_id": order_id, "quantity": quantity,
                            "from_reserved": from_reserved})]

    def decide_return(self, order_id: str, quantity: int, restock: bool) -> list[NewEvent]:
        if quantity < 1:
            raise DomainError(errors.QUANTITY_OUT_OF_RANGE, "quantity must be positive",
                              {"quantity": quantity})
        return [make_event("StockReturned", self.product_id,
                           {"product_id": self.product_id, "order_id": order_id, "quantity": quantity,
                            "restocked": restock})]

    def decide_adjust(self, delta: int, reason: str) -> list[NewEvent]:
        if reason not in ADJUST_REASONS:
            raise DomainError(errors.INVALID_ADJUSTMENT, f"reason must be one of {', '.join(ADJUST_REASONS)}",
                              {"reason": reason})
        if delta == 0 or abs(delta) > MAX_RESTOCK:
            raise DomainError(errors.INVALID_ADJUSTMENT, f"delta must be non-zero and at most {MAX_RESTOCK} "
                              "either way", {"delta": delta})
        if self.on_hand + delta < self.reserved:
            raise DomainError(
                errors.STOCK_BELOW_RESERVED,
                f"{self.product_id}: on hand {self.on_hand} {delta:+d} would fall below the {self.reserved} "
                "units reserved by open orders",
                {"product_id": self.product_id, "on_hand": self.on_hand, "reserved": self.reserved,
                 "delta": delta},
            )
        return [make_event("StockAdjusted", self.product_id,
                           {"product_id": self.product_id, "delta": delta, "reason": reason})]

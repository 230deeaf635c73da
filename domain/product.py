"""Product aggregate: catalogue data, price and stock (on hand, reserved per order)."""

from __future__ import annotations

from typing import Any

from domain import errors
from domain.base import Aggregate, EventLike, make_event
from domain.errors import DomainError
from domain.events import PRODUCT, NewEvent

MAX_RESTOCK = 1_000_000


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
        self.reserved -= d["quantity"]
        left = self.reservations.get(d["order_id"], 0) - d["quantity"]
        if left > 0:
            self.reservations[d["order_id"]] = left
        else:
            self.reservations.pop(d["order_id"], None)

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

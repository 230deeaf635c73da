"""Product commands: register, restock, price, adjust, reserve, release."""

from __future__ import annotations

from typing import Any

from commands.specs.base import Aggregates, CommandSpec, NewId, Prepared, existing, url_id
from commands.validation import Fields, minor_for
from domain import ids
from domain.events import PRODUCT, NewEvent
from domain.product import ADJUST_REASONS, Product

MAX_CATEGORY = 100


def _prep_register(entity_id: str | None, f: Fields, new_id: NewId) -> Prepared:
    product_id = f.ident("product_id", required=False)
    name = f.text("name")
    category = f.text("category", max_len=MAX_CATEGORY)
    currency = f.currency()
    price = f.amount("price", currency)
    f.raise_if_invalid()
    return Prepared(product_id or new_id(ids.PRODUCT_KIND),
                    {"name": name, "category": category, "price_minor": price, "currency": currency})


def _register(agg: Aggregates, pid: str, a: dict[str, Any]) -> list[NewEvent]:
    product = agg.load(Product, pid)
    return product.decide_register(pid, a["name"], a["category"], a["price_minor"], a["currency"])


def _prep_quantity(entity_id: str | None, f: Fields, new_id: NewId) -> Prepared:
    quantity = f.integer("quantity")
    f.raise_if_invalid()
    return Prepared(url_id(PRODUCT, entity_id), {"quantity": quantity})


def _restock(agg: Aggregates, pid: str, a: dict[str, Any]) -> list[NewEvent]:
    return existing(agg, Product, pid).decide_restock(a["quantity"])


def _prep_price(entity_id: str | None, f: Fields, new_id: NewId) -> Prepared:
    price = f.decimal("price")
    f.raise_if_invalid()
    return Prepared(url_id(PRODUCT, entity_id), {"price": price})


def _price(agg: Aggregates, pid: str, a: dict[str, Any]) -> list[NewEvent]:
    product = existing(agg, Product, pid)
    return product.decide_change_price(minor_for("price", a["price"], product.currency))


def _prep_reservation(entity_id: str | None, f: Fields, new_id: NewId) -> Prepared:
    order_id = f.ident("order_id")
    quantity = f.integer("quantity")
    f.raise_if_invalid()
    return Prepared(url_id(PRODUCT, entity_id), {"order_id": order_id, "quantity": quantity})


def _prep_adjust(entity_id: str | None, f: Fields, new_id: NewId) -> Prepared:
    delta = f.integer("delta")
    if delta == 0:
        f.error("delta", "must not be zero")
    reason = f.choice("reason", ADJUST_REASONS)
    f.raise_if_invalid()
    return Prepared(url_id(PRODUCT, entity_id), {"delta": delta, "reason": reason})


def _adjust(agg: Aggregates, pid: str, a: dict[str, Any]) -> list[NewEvent]:
    return existing(agg, Product, pid).decide_adjust(a["delta"], a["reason"])


def _reserve(agg: Aggregates, pid: str, a: dict[str, Any]) -> list[NewEvent]:
    return existing(agg, Product, pid).decide_reserve(a["order_id"], a["quantity"])


def _release(agg: Aggregates, pid: str, a: dict[str, Any]) -> list[NewEvent]:
    return existing(agg, Product, pid).decide_release(a["order_id"], a["quantity"])


PRODUCT_COMMANDS: dict[str, CommandSpec] = {
    "product.register": CommandSpec(Product, True, _prep_register, _register),
    "product.restock": CommandSpec(Product, False, _prep_quantity, _restock),
    "product.price": CommandSpec(Product, False, _prep_price, _price),
    "product.adjust": CommandSpec(Product, False, _prep_adjust, _adjust),
    "product.reserve": CommandSpec(Product, False, _prep_reservation, _reserve),
    "product.release": CommandSpec(Product, False, _prep_reservation, _release),
}

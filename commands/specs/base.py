"""What a command spec is: parse the payload (``prepare``), then decide from loaded aggregates (``decide``).

A spec knows nothing of the bus that runs it: ``prepare`` gets a way to mint ids, ``decide`` a way to
load aggregates (the bus's unit of work). The helpers here are the shapes most commands share.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from commands.validation import Fields, InvalidCommand
from domain import ids
from domain.base import Aggregate
from domain.errors import NotFound
from domain.events import NewEvent
from domain.order import MAX_LINES, ReturnLine
from domain.product import Product

A = TypeVar("A", bound=Aggregate)

MAX_REASON = 500  # an optional free-text reason (cancel, fail)

NewId = Callable[[str], str]  # kind (ids.ORDER_KIND, ...) -> a fresh id of that kind


class Aggregates(Protocol):
    """Loads an aggregate at its current version (once per command attempt)."""

    def load(self, cls: type[A], stream_id: str) -> A: ...


@dataclass(frozen=True)
class Prepared:
    """A valid payload: the primary stream's id and the arguments ``decide`` takes."""

    entity_id: str
    args: dict[str, Any]


Prepare = Callable[[str | None, Fields, NewId], Prepared]
Decide = Callable[[Aggregates, str, dict[str, Any]], list[NewEvent]]


@dataclass(frozen=True)
class CommandSpec:
    aggregate: type[Aggregate]  # of the primary stream
    creates: bool  # the command opens its primary stream (an id may be generated)
    prepare: Prepare
    decide: Decide


def url_id(entity_type: str, entity_id: str | None) -> str:
    """The id of the URL: required; an id that cannot exist is a 404."""
    if entity_id is None:
        raise InvalidCommand([{"field": f"{entity_type}_id", "message": "is required"}])
    if not ids.validate_id(entity_id):
        raise NotFound(entity_type, entity_id)
    return entity_id


def existing(aggregates: Aggregates, cls: type[A], entity_id: str) -> A:
    agg = aggregates.load(cls, entity_id)
    if not agg.exists:
        raise NotFound(cls.stream_type, entity_id)
    return agg


def plain(etype: str) -> Prepare:
    """A command without fields."""

    def prepare(entity_id: str | None, f: Fields, new_id: NewId) -> Prepared:
        f.raise_if_invalid()
        return Prepared(url_id(etype, entity_id), {})

    return prepare


def with_reason(etype: str) -> Prepare:
    """A command whose only field is an optional ``reason``."""

    def prepare(entity_id: str | None, f: Fields, new_id: NewId) -> Prepared:
        reason = f.text("reason", required=False, max_len=MAX_REASON)
        f.raise_if_invalid()
        return Prepared(url_id(etype, entity_id), {"reason": reason})

    return prepare


def refund(etype: str) -> Prepare:
    """``{amount, lines?: [{product_id, quantity}], restock?: bool}``: returned lines go back into
    stock unless ``restock`` is false."""

    def prepare(entity_id: str | None, f: Fields, new_id: NewId) -> Prepared:
        amount = f.decimal("amount", positive=True)
        returns = []
        for lf in f.objects("lines", min_items=1, max_items=MAX_LINES, required=False):
            product_id = lf.ident("product_id")
            quantity = lf.integer("quantity")
            if product_id is not None and quantity is not None:
                returns.append(ReturnLine(product_id, quantity))
        restock = f.boolean("restock", default=True)
        f.raise_if_invalid()
        args = {"amount": amount, "returns": returns, "restock": restock}
        return Prepared(url_id(etype, entity_id), args)

    return prepare


def returned_products(aggregates: Aggregates, args: dict[str, Any]) -> dict[str, Product]:
    """The products of a refund's returned lines (``refund`` prepares ``returns``)."""
    return {r.product_id: aggregates.load(Product, r.product_id) for r in args["returns"]}

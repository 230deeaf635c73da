"""Anti-corruption layer: legacy rows -> commands on our aggregates.

A translator reconciles: given a canonical record (the legacy row as it now is) and the current state
of the aggregates it touches, it returns the *next* command that brings our domain closer to what the
legacy table says, or None when they agree. The ingestor executes that command through the ordinary
command handlers (same invariants as an HTTP command), reloads and asks again. Reconciling instead of
diffing before/after images makes re-delivery, re-snapshots and skipped intermediate states safe: a
change that is already reflected yields nothing, and a status jump (pending -> shipped) becomes the
missing steps (confirm, ship).

Legacy operation -> domain events (docs/legacy-cdc.md has the full table):
- orders: new row -> (UserRegistered) + OrderPlaced + StockReserved; status confirmed / shipped /
  delivered -> OrderConfirmed / OrderShipped + StockShipped / OrderDelivered (skipped steps filled
  in); cancelled -> OrderCancelled + StockReleased; delete of a pending/confirmed order ->
  OrderCancelled. A new row already shipped whose units the product no longer has (a snapshot's
  inventory row is counted after the shipment) first gets them as a ``legacy_sync`` adjustment.
- payments: new row -> PaymentInitiated; completed -> PaymentCompleted + OrderPaymentCaptured;
  failed -> PaymentFailed; delete of a pending payment -> PaymentFailed.
- products: new row -> ProductRegistered; price change -> ProductPriceChanged.
- inventory (quantity = units on hand, the shop decrements it when goods ship): quantity up ->
  StockReceived(delta); down -> StockAdjusted(delta, legacy_sync).
Everything else raises Untranslatable (dead letter, replayable after a mapping fix) or is ignored on
purpose (``IGNORED`` notes say why).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from connectors.legacy.canonical import DELETE, CanonicalRecord
from connectors.legacy.declaration import SourceSpec
from domain.money import format_major, is_known_currency
from domain.order import CANCELLABLE, CANCELLED, CONFIRMED, DELIVERED, PENDING, SHIPPED, Order
from domain.payment import COMPLETED, FAILED, INITIATED, PAYMENT_METHODS, Payment
from domain.product import Product
from domain.user import User

LEGACY_SYNC = "legacy_sync"

ORDER_PATH = (PENDING, CONFIRMED, SHIPPED, DELIVERED)
ORDER_STEP = {CONFIRMED: "order.confirm", SHIPPED: "order.ship", DELIVERED: "order.deliver"}
LEGACY_PAYMENT_STATUS = {"pending": INITIATED, "completed": COMPLETED, "failed": FAILED}
DELETED_REASON = "deleted in the legacy source"


class Untranslatable(Exception):
    """The change has no meaning in our domain (yet): dead-lettered with this reason."""


class MissingReference(Exception):
    """The change refers to an entity we have not seen yet (it may arrive later): parked and retried,
    at once when ``waits_for`` (our id of the missing entity) is created."""

    def __init__(self, message: str, waits_for: str | None = None) -> None:
        super().__init__(message)
        self.waits_for = waits_for


@dataclass(frozen=True)
class Step:
    command: str
    entity_id: str | None
    payload: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Unique per record: one record never needs the same command on the same entity twice."""
        return f"{self.command}:{self.entity_id or ''}"


class DomainState(Protocol):
    """Current aggregates, read through the event-store port."""

    def order(self, order_id: str) -> Order: ...
    def payment(self, payment_id: str) -> Payment: ...
    def product(self, product_id: str) -> Product: ...
    def user(self, user_id: str) -> User: ...


@dataclass(frozen=True)
class Ids:
    prefix: str

    def order(self, legacy: Any) -> str:
        return f"{self.prefix}ORD-{legacy}"

    def payment(self, legacy: Any) -> str:
        return f"{self.prefix}PAY-{legacy}"

    def product(self, legacy: Any) -> str:
        return f"{self.prefix}PROD-{legacy}"

    def user(self, legacy: Any) -> str:
        return f"{self.prefix}USR-{legacy}"


class Row:
    """A row image read through the table's column mapping; a missing column is a schema change."""

    def __init__(self, record: CanonicalRecord, spec: SourceSpec) -> None:
        image = record.row
        assert image is not None
        self.image = image
        table = spec.table(record.source.schema, record.source.table)
        self.columns = table.columns if table is not None else {}
        self.table = f"{record.source.schema}.{record.source.table}"

    def get(self, name: str) -> Any:
        column = self.columns.get(name, name)
        if column not in self.image:
            raise Untranslatable(f"{self.table}: column {column!r} is missing (dropped or renamed? map it "
                                 f"under columns: in the source)")
        return self.image[column]

    def int(self, name: str) -> int:
        value = self.get(name)
        try:
            return int(value)
        except (TypeError, ValueError):
            raise Untranslatable(f"{self.table}: {name} {value!r} is not an integer") from None

    def text(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise Untranslatable(f"{self.table}: {name} is null")
        return str(value).strip()

    def currency(self) -> str:
        code = self.text("currency").upper()
        if not is_known_currency(code):
            raise Untranslatable(f"{self.table}: unknown currency {code!r}")
        return code


def translate_orders(record: CanonicalRecord, row: Row, state: DomainState, ids: Ids) -> Step | None:
    order_id = ids.order(record.entity_id)
    order = state.order(order_id)
    if record.operation == DELETE:
        if order.exists and order.status in CANCELLABLE:
            return Step("order.cancel", order_id, {"reason": DELETED_REASON})
        return None  # IGNORED: deleting a finished (or never seen) order is archival, not a business event
    desired = row.text("status").lower()
    if desired not in (*ORDER_PATH, CANCELLED):
        raise Untranslatable(f"orders: status {desired!r} has no mapping (expected one of "
                             f"{', '.join((*ORDER_PATH, CANCELLED))})")
    currency = row.currency()
    quantity, unit_price = row.int("quantity"), row.int("unit_price_cents")
    product_id = ids.product(row.get("product_id"))
    if not order.exists:
        user_id = ids.user(row.get("customer_id"))
        if not state.user(user_id).exists:
            return Step("user.register", None, {"user_id": user_id})
        product = state.product(product_id)
        if not product.exists:
            raise MissingReference(f"orders: product {product_id} is not known yet", product_id)
        if desired in (SHIPPED, DELIVERED) and product.available < quantity:
            # the units left before the legacy stock figure we hold was counted: bring them back so the
            # order can be placed and shipped (the inventory row is reconciled again after the shipment)
            return Step("product.adjust", product_id,
                        {"delta": quantity - product.available, "reason": LEGACY_SYNC})
        channel = row.image.get(row.columns.get("channel", "channel")) or "legacy"
        return Step("order.place", None, {
            "order_id": order_id, "user_id": user_id, "currency": currency, "channel": str(channel),
            "lines": [{"product_id": product_id, "quantity": quantity,
                       "unit_price": format_major(unit_price, currency)}],
        })
    line = order.lines[0] if len(order.lines) == 1 else None
    if (line is None or line.product_id != product_id or line.quantity != quantity
            or line.unit_price_minor != unit_price or order.currency != currency):
        raise Untranslatable(f"orders: {order_id} was amended in the legacy source (product, quantity, price "
                             "or currency changed); orders cannot be amended")
    current = order.status
    if desired == current:
        return None
    if desired == CANCELLED and current in CANCELLABLE:
        return Step("order.cancel", order_id, {"reason": "cancelled in the legacy source"})
    ahead = desired in ORDER_PATH and current in ORDER_PATH
    if ahead and ORDER_PATH.index(desired) > ORDER_PATH.index(current):
        nxt = ORDER_PATH[ORDER_PATH.index(current) + 1]
        return Step(ORDER_STEP[nxt], order_id)
    raise Untranslatable(f"orders: {order_id} cannot go from {current} to {desired}")


def translate_payments(record: CanonicalRecord, row: Row, state: DomainState, ids: Ids) -> Step | None:
    payment_id = ids.payment(record.entity_id)
    payment = state.payment(payment_id)
    if record.operation == DELETE:
        if payment.exists and payment.status == INITIATED:
            return Step("payment.fail", payment_id, {"reason": DELETED_REASON})
        return None  # IGNORED: a settled payment's row deleted is archival
    legacy_status = row.text("status").lower()
    desired = LEGACY_PAYMENT_STATUS.get(legacy_status)
    if desired is None:
        raise Untranslatable(f"payments: status {legacy_status!r} has no mapping (expected one of "
                             f"{', '.join(LEGACY_PAYMENT_STATUS)})")
    currency = row.currency()
    amount = row.int("amount_cents")
    if not payment.exists:
        method = row.text("method").lower()
        if method not in PAYMENT_METHODS:
            raise Untranslatable(f"payments: method {method!r} has no mapping ({', '.join(PAYMENT_METHODS)})")
        order_id = ids.order(row.get("order_id"))
        if not state.order(order_id).exists:
            raise MissingReference(f"payments: order {order_id} is not known yet", order_id)
        return Step("payment.initiate", None, {
            "payment_id": payment_id, "order_id": order_id, "amount": format_major(amount, currency),
            "currency": currency, "method": method,
        })
    if payment.amount_minor != amount or payment.currency != currency:
        raise Untranslatable(f"payments: {payment_id} amount or currency changed in the legacy source")
    if desired == payment.status or (desired == COMPLETED and payment.status == "refunded"):
        return None
    if payment.status == INITIATED and desired == COMPLETED:
        return Step("payment.complete", payment_id)
    if payment.status == INITIATED and desired == FAILED:
        return Step("payment.fail", payment_id, {"reason": "failed in the legacy source"})
    raise Untranslatable(f"payments: {payment_id} cannot go from {payment.status} to {desired}")


def translate_products(record: CanonicalRecord, row: Row, state: DomainState, ids: Ids) -> Step | None:
    product_id = ids.product(record.entity_id)
    if record.operation == DELETE:
        return None  # IGNORED: no delisting event; the product's history stays in the metrics
    product = state.product(product_id)
    currency = row.currency()
    price = row.int("price_cents")
    if not product.exists:
        return Step("product.register", None, {
            "product_id": product_id, "name": row.text("name") or product_id,
            "category": row.text("category") or "uncategorised", "price": format_major(price, currency),
            "currency": currency,
        })
    if product.currency != currency:
        raise Untranslatable(f"products: {product_id} changed currency {product.currency} -> {currency}")
    if product.price_minor != price:
        return Step("product.price", product_id, {"price": format_major(price, currency)})
    return None  # name/category edits: IGNORED (no domain event carries them)


def translate_inventory(record: CanonicalRecord, row: Row, state: DomainState, ids: Ids) -> Step | None:
    if record.operation == DELETE:
        return None  # IGNORED: a deleted stock row says nothing about units
    product_id = ids.product(row.get("product_id"))
    product = state.product(product_id)
    if not product.exists:
        raise MissingReference(f"inventory: product {product_id} is not known yet", product_id)
    quantity = row.int("quantity")
    delta = quantity - product.on_hand
    if delta > 0:
        return Step("product.restock", product_id, {"quantity": delta})
    if delta < 0:  # counted down, written off, or shipped by the shop before its order row said so
        return Step("product.adjust", product_id, {"delta": delta, "reason": LEGACY_SYNC})
    return None


TRANSLATORS = {
    "orders": translate_orders,
    "payments": translate_payments,
    "products": translate_products,
    "inventory": translate_inventory,
}


def next_step(record: CanonicalRecord, spec: SourceSpec, state: DomainState) -> Step | None:
    """The next command that reconciles our domain with the record's row, or None when they agree."""
    translator = TRANSLATORS.get(record.entity_type)
    if translator is None:
        raise Untranslatable(f"no translator {record.entity_type!r}")
    return translator(record, Row(record, spec), state, Ids(spec.id_prefix))

"""Every endpoint the clients offer, once: each function describes one request (a :class:`Call`) and
the sync and async clients run it (``Client.metric`` is ``calls.metric`` run by ``Client``)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

import msgspec

from agentflow_client.types import (
    Catalog,
    DeadLetterList,
    DeadLetterReplayed,
    DeadLetterView,
    EntityValue,
    HealthReport,
    MetricValue,
    OrderAck,
    OrderTimeline,
    PaymentAck,
    ProductAck,
    QueryResult,
    SearchResults,
    SessionAck,
    UserAck,
    WhoAmI,
)

T = TypeVar("T")
Amount = Decimal | str | int | float
# None: a fresh key per call (a retry of that call resends it); a string: yours; False: send none (the
# command is then never retried)
IdempotencyKey = str | Literal[False] | None


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    result: type[T]
    params: dict[str, Any] = field(default_factory=dict)
    body: Any = None
    command: bool = False
    consistent: bool = False  # a read that takes min_position (a Session fills it in)
    read: bool = True  # safe to send again after a lost answer
    if_match: int | None = None
    idempotency_key: str | None = None

    @property
    def retryable(self) -> bool:
        """May be sent again after a 429/503 or a lost connection: not a command without its key."""
        return not self.command or self.idempotency_key is not None


class OrderLine(msgspec.Struct, frozen=True):
    product_id: str
    quantity: int
    unit_price: Amount


class ReturnLine(msgspec.Struct, frozen=True):
    product_id: str
    quantity: int


def _seg(value: str) -> str:
    return quote(str(value), safe="")


def _clean(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _consistency(
    min_position: int | None, timeout_ms: int | None, allow_stale: bool | None
) -> dict[str, Any]:
    stale = None if allow_stale is None else ("true" if allow_stale else "false")
    return _clean({"min_position": min_position, "timeout_ms": timeout_ms, "allow_stale": stale})


def _command(
    path: str, ack: type[T], body: Any, if_match: int | None, idempotency_key: IdempotencyKey
) -> Call[T]:
    key = str(uuid.uuid4()) if idempotency_key is None else (idempotency_key or None)
    return Call("POST", path, ack, body=body, command=True, read=False, if_match=if_match,
                idempotency_key=key)  # fmt: skip


# ---- reads ----------------------------------------------------------------------------------------


def metric(
    name: str, window: str | None = None, *, currency: str | None = None, channel: str | None = None,
    category: str | None = None, product: str | None = None, method: str | None = None,
    as_of: str | None = None, min_position: int | None = None, timeout_ms: int | None = None,
    allow_stale: bool | None = None,
) -> Call[MetricValue]:
    """``GET /v1/metrics/{name}``: the metric over ``window`` (5m, 15m, 1h, 6h, 24h; ``now`` for gauges)."""
    params = _clean({"window": window, "currency": currency, "channel": channel, "category": category,
                     "product": product, "method": method, "as_of": as_of})  # fmt: skip
    params.update(_consistency(min_position, timeout_ms, allow_stale))
    return Call("GET", f"/v1/metrics/{_seg(name)}", MetricValue, params, consistent=True)


def entity(
    entity_type: str, entity_id: str, *, as_of: str | None = None, min_position: int | None = None,
    timeout_ms: int | None = None, allow_stale: bool | None = None,
) -> Call[EntityValue]:
    """``GET /v1/entity/{type}/{id}``: an order, user, product or session as it is (or was ``as_of``)."""
    params = _clean({"as_of": as_of}) | _consistency(min_position, timeout_ms, allow_stale)
    path = f"/v1/entity/{_seg(entity_type)}/{_seg(entity_id)}"
    return Call("GET", path, EntityValue, params, consistent=True)


def timeline(entity_id: str, entity_type: str = "order", *, as_of: str | None = None) -> Call[OrderTimeline]:
    """``GET /v1/entity/{type}/{id}/timeline``: the entity's events with stages and durations."""
    path = f"/v1/entity/{_seg(entity_type)}/{_seg(entity_id)}/timeline"
    return Call("GET", path, OrderTimeline, _clean({"as_of": as_of}))


def query(
    question: str | None = None, *, sql: str | None = None, metrics: list[str] | str | None = None,
    window: str | None = None, dimensions: list[str] | None = None, filters: dict[str, Any] | None = None,
    grain: str | None = None, limit: int | None = None, cursor: str | None = None,
    min_position: int | None = None, timeout_ms: int | None = None, allow_stale: bool | None = None,
) -> Call[QueryResult]:
    """``POST /v1/query``: a plain-language question, guarded SQL, or metrics by dimensions."""
    body = _clean({"question": question, "sql": sql, "metrics": metrics, "window": window,
                   "dimensions": dimensions, "filters": filters, "grain": grain, "limit": limit,
                   "cursor": cursor})  # fmt: skip
    params = _consistency(min_position, timeout_ms, allow_stale)
    return Call("POST", "/v1/query", QueryResult, params, body=body, consistent=True)


def search(
    q: str, *, limit: int | None = None, entity_types: list[str] | str | None = None,
    min_position: int | None = None, timeout_ms: int | None = None, allow_stale: bool | None = None,
) -> Call[SearchResults]:
    """``GET /v1/search``: entities, metrics and catalog fields matching ``q``."""
    types = ",".join(entity_types) if isinstance(entity_types, list) else entity_types
    params = _clean({"q": q, "limit": limit, "entity_types": types})
    params.update(_consistency(min_position, timeout_ms, allow_stale))
    return Call("GET", "/v1/search", SearchResults, params, consistent=True)


def catalog() -> Call[Catalog]:
    """``GET /v1/catalog``: the entities, metrics and streams the API serves."""
    return Call("GET", "/v1/catalog", Catalog)


def health() -> Call[HealthReport]:
    """``GET /v1/health``"""
    return Call("GET", "/v1/health", HealthReport)


def whoami() -> Call[WhoAmI]:
    """``GET /v1/whoami``: the key's tenant and scopes (``write`` allows the commands)."""
    return Call("GET", "/v1/whoami", WhoAmI)


def deadletters(
    *, status: str | None = None, stage: str | None = None, pipeline: str | None = None,
    event_type: str | None = None, since: str | None = None, limit: int | None = None,
    cursor: str | None = None,
) -> Call[DeadLetterList]:
    """``GET /v1/deadletter``: rejected events, newest first (one page; ``next_cursor`` for the next)."""
    params = _clean({"status": status, "stage": stage, "pipeline": pipeline, "event_type": event_type,
                     "since": since, "limit": limit, "cursor": cursor})  # fmt: skip
    return Call("GET", "/v1/deadletter", DeadLetterList, params)


def deadletter(letter_id: int) -> Call[DeadLetterView]:
    """``GET /v1/deadletter/{id}``"""
    return Call("GET", f"/v1/deadletter/{int(letter_id)}", DeadLetterView)


def replay_deadletter(letter_id: int, data: dict[str, Any] | None = None) -> Call[DeadLetterReplayed]:
    """``POST /v1/deadletter/{id}/replay``: append it again (with ``data`` as its corrected payload)."""
    return Call("POST", f"/v1/deadletter/{int(letter_id)}/replay", DeadLetterReplayed, body={"data": data},
                read=False)  # fmt: skip


def dismiss_deadletter(letter_id: int, note: str | None = None) -> Call[DeadLetterView]:
    """``POST /v1/deadletter/{id}/dismiss``"""
    return Call("POST", f"/v1/deadletter/{int(letter_id)}/dismiss", DeadLetterView, body={"note": note},
                read=False)  # fmt: skip


# ---- commands (each takes if_match= and idempotency_key=) ------------------------------------------


def register_user(
    user_id: str | None = None, *, name: str | None = None, email: str | None = None,
    region: str | None = None, if_match: int | None = None, idempotency_key: IdempotencyKey = None,
) -> Call[UserAck]:
    body = _clean({"user_id": user_id, "name": name, "email": email, "region": region})
    return _command("/v1/users", UserAck, body, if_match, idempotency_key)


def register_product(
    *, name: str, category: str, price: Amount, currency: str, product_id: str | None = None,
    if_match: int | None = None, idempotency_key: IdempotencyKey = None,
) -> Call[ProductAck]:
    body = _clean({"product_id": product_id, "name": name, "category": category, "price": price,
                   "currency": currency})  # fmt: skip
    return _command("/v1/products", ProductAck, body, if_match, idempotency_key)


def restock_product(
    product_id: str, quantity: int, *, if_match: int | None = None, idempotency_key: IdempotencyKey = None
) -> Call[ProductAck]:
    path = f"/v1/products/{_seg(product_id)}/restock"
    return _command(path, ProductAck, {"quantity": quantity}, if_match, idempotency_key)


def reserve_stock(
    product_id: str, order_id: str, quantity: int, *, if_match: int | None = None,
    idempotency_key: IdempotencyKey = None,
) -> Call[ProductAck]:
    path = f"/v1/products/{_seg(product_id)}/reserve"
    return _command(path, ProductAck, {"order_id": order_id, "quantity": quantity}, if_match, idempotency_key)


def release_stock(
    product_id: str, order_id: str, quantity: int, *, if_match: int | None = None,
    idempotency_key: IdempotencyKey = None,
) -> Call[ProductAck]:
    path = f"/v1/products/{_seg(product_id)}/release"
    return _command(path, ProductAck, {"order_id": order_id, "quantity": quantity}, if_match, idempotency_key)


def adjust_stock(
    product_id: str, delta: int, reason: str, *, if_match: int | None = None,
    idempotency_key: IdempotencyKey = None,
) -> Call[ProductAck]:
    path = f"/v1/products/{_seg(product_id)}/adjust"
    return _command(path, ProductAck, {"delta": delta, "reason": reason}, if_match, idempotency_key)


def change_price(
    product_id: str, price: Amount, *, if_match: int | None = None, idempotency_key: IdempotencyKey = None
) -> Call[ProductAck]:
    path = f"/v1/products/{_seg(product_id)}/price"
    return _command(path, ProductAck, {"price": price}, if_match, idempotency_key)


def place_order(
    *, user_id: str, lines: list[OrderLine], currency: str, channel: str | None = None,
    order_id: str | None = None, if_match: int | None = None, idempotency_key: IdempotencyKey = None,
) -> Call[OrderAck]:
    body = _clean({"order_id": order_id, "user_id": user_id, "lines": lines, "currency": currency,
                   "channel": channel})  # fmt: skip
    return _command("/v1/orders", OrderAck, body, if_match, idempotency_key)


def _order_step(
    step: str, order_id: str, body: Any, if_match: int | None, key: IdempotencyKey
) -> Call[OrderAck]:
    return _command(f"/v1/orders/{_seg(order_id)}/{step}", OrderAck, body, if_match, key)


def confirm_order(
    order_id: str, *, if_match: int | None = None, idempotency_key: IdempotencyKey = None
) -> Call[OrderAck]:
    return _order_step("confirm", order_id, None, if_match, idempotency_key)


def ship_order(
    order_id: str, *, if_match: int | None = None, idempotency_key: IdempotencyKey = None
) -> Call[OrderAck]:
    return _order_step("ship", order_id, None, if_match, idempotency_key)


def deliver_order(
    order_id: str, *, if_match: int | None = None, idempotency_key: IdempotencyKey = None
) -> Call[OrderAck]:
    return _order_step("deliver", order_id, None, if_match, idempotency_key)


def cancel_order(
    order_id: str, reason: str | None = None, *, if_match: int | None = None,
    idempotency_key: IdempotencyKey = None,
) -> Call[OrderAck]:
    return _order_step("cancel", order_id, _clean({"reason": reason}), if_match, idempotency_key)


def refund_order(
    order_id: str, amount: Amount, *, lines: list[ReturnLine] | None = None, restock: bool = True,
    if_match: int | None = None, idempotency_key: IdempotencyKey = None,
) -> Call[OrderAck]:
    body = _clean({"amount": amount, "lines": lines, "restock": restock})
    return _order_step("refund", order_id, body, if_match, idempotency_key)


def initiate_payment(
    *, order_id: str, amount: Amount, currency: str, method: str = "card", payment_id: str | None = None,
    if_match: int | None = None, idempotency_key: IdempotencyKey = None,
) -> Call[PaymentAck]:
    body = _clean({"payment_id": payment_id, "order_id": order_id, "amount": amount, "currency": currency,
                   "method": method})  # fmt: skip
    return _command("/v1/payments", PaymentAck, body, if_match, idempotency_key)


def complete_payment(
    payment_id: str, *, if_match: int | None = None, idempotency_key: IdempotencyKey = None
) -> Call[PaymentAck]:
    return _command(f"/v1/payments/{_seg(payment_id)}/complete", PaymentAck, None, if_match, idempotency_key)


def fail_payment(
    payment_id: str, reason: str | None = None, *, if_match: int | None = None,
    idempotency_key: IdempotencyKey = None,
) -> Call[PaymentAck]:
    path = f"/v1/payments/{_seg(payment_id)}/fail"
    return _command(path, PaymentAck, _clean({"reason": reason}), if_match, idempotency_key)


def refund_payment(
    payment_id: str, amount: Amount, *, lines: list[ReturnLine] | None = None, restock: bool = True,
    if_match: int | None = None, idempotency_key: IdempotencyKey = None,
) -> Call[PaymentAck]:
    body = _clean({"amount": amount, "lines": lines, "restock": restock})
    return _command(f"/v1/payments/{_seg(payment_id)}/refund", PaymentAck, body, if_match, idempotency_key)


def record_session_event(
    session_id: str, *, type: str, page_url: str, user_id: str | None = None, product_id: str | None = None,
    if_match: int | None = None, idempotency_key: IdempotencyKey = None,
) -> Call[SessionAck]:
    """``POST /v1/sessions/{id}/events``: page_view, click, add_to_cart, checkout_started (or checkout)."""
    body = _clean({"type": type, "page_url": page_url, "user_id": user_id, "product_id": product_id})
    return _command(f"/v1/sessions/{_seg(session_id)}/events", SessionAck, body, if_match, idempotency_key)

"""Command execution: validate, load aggregates (cached), decide, append atomically.

``execute`` raises InvalidCommand (422), NotFound (404), DomainError (409) or VersionConflict (409);
nothing is appended on any error. Conflicts on streams the caller did not pin with If-Match are
retried against the fresh state.

Optimistic mode (``CommandContext.optimistic``) saves the load round trip: streams the cache holds are
taken at their cached version, and a command's own new stream (an uncached primary stream of a command
that may create it) at version 0, without asking the store. That is safe because the append checks the
expected version of every stream it writes and writes nothing on a mismatch; the attempt is then
redone with loads. Anything else decided from unchecked state is never reported: an error, an If-Match
mismatch, or a stream that was read but not written (its version is not checked by the append) sends
the command down the loading path.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from commands.cache import AggregateCache
from commands.idempotency import IdempotencyClaim, record_for, stored_answer
from commands.ports import (
    EventStorePort,
    IdempotencyRecord,
    IdempotencyReplay,
    StreamKey,
    StreamWrite,
    VersionConflict,
)
from commands.validation import Fields, InvalidCommand, minor_for
from domain import flows, ids
from domain.base import Aggregate
from domain.errors import DomainError, NotFound
from domain.events import ORDER, PAYMENT, PRODUCT, SESSION, USER, NewEvent
from domain.order import MAX_LINES, Order, OrderLine, ReturnLine
from domain.payment import PAYMENT_METHODS, Payment
from domain.product import ADJUST_REASONS, Product
from domain.session import API_EVENT_TYPES, Session
from domain.user import User

MAX_ATTEMPTS = 5

DEFAULT_CACHE = AggregateCache()

A = TypeVar("A", bound=Aggregate)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class CommandContext:
    tenant_id: str
    store: EventStorePort
    metadata: dict[str, Any]
    if_match: int | None = None
    now: datetime = field(default_factory=_utcnow)
    # Idempotency-Key of the request: its record commits with the events; a repeat is replayed
    idempotency: IdempotencyClaim | None = None
    # None -> the process-wide DEFAULT_CACHE
    cache: AggregateCache | None = None
    # skip loads the append's version check makes redundant (see the module docstring)
    optimistic: bool = False
    # a UUID: the events get ids derived from it (uuid5 by index) instead of random ones, so a
    # re-delivered change (CDC) appends the same ids and the store's unique event id refuses a copy
    event_id_seed: str | None = None


@dataclass(frozen=True)
class CommandResult:
    entity_type: str
    entity_id: str
    stream_version: int
    position: int
    created: bool
    replayed: bool = False


class UnitOfWork:
    """Aggregates loaded for one attempt, each with the stream version it was folded to."""

    def __init__(
        self, ctx: CommandContext, cache: AggregateCache, optimistic: bool = False,
        fresh: StreamKey | None = None,
    ) -> None:
        self.ctx = ctx
        self.cache = cache
        self.loaded: dict[StreamKey, tuple[int, Aggregate]] = {}
        # optimistic: take cached streams (and ``fresh``, a stream the command may create, when not
        # cached) without reading the store; such streams are listed in ``unchecked``
        self.optimistic = optimistic
        self.fresh = fresh
        self.unchecked: set[StreamKey] = set()

    def load(self, cls: type[A], stream_id: str) -> A:
        key = (cls.stream_type, stream_id)
        if key in self.loaded:
            agg = self.loaded[key][1]
            assert isinstance(agg, cls)
            return agg
        ckey = (self.ctx.tenant_id, cls.stream_type, stream_id)
        cached = self.cache.get(ckey)
        version, base = (cached[0], cached[1]) if cached and isinstance(cached[1], cls) else (0, cls())
        if self.optimistic and (cached is not None and version > 0 or key == self.fresh):
            self.unchecked.add(key)
            self.loaded[key] = (version, base)
            assert isinstance(base, cls)
            return base
        tenant = self.ctx.tenant_id
        events = self.ctx.store.load_stream(tenant, cls.stream_type, stream_id, after_version=version)
        if events and events[0].stream_version != version + 1:
            # the store no longer matches the cache (e.g. it was reset): fold from scratch
            self.cache.evict(ckey)
            version, base = 0, cls()
            events = self.ctx.store.load_stream(tenant, cls.stream_type, stream_id)
        agg = base
        if events:
            agg = base.clone()
            for event in events:
                agg.apply(event)
            version = events[-1].stream_version
            self.cache.put(ckey, version, agg)
        assert isinstance(agg, cls)
        self.loaded[key] = (version, agg)
        return agg

    def check_read_only(self, writes: list[StreamWrite]) -> bool:
        """Check unchecked streams the append will not version-check (read, not written) against the
        store; False when one has moved on (the decision must be redone from loaded state)."""
        written = {(w.stream_type, w.stream_id) for w in writes}
        for key in [k for k in self.unchecked if k not in written]:
            version = self.loaded[key][0]
            if self.ctx.store.load_stream(self.ctx.tenant_id, key[0], key[1], after_version=version):
                return False
            self.unchecked.discard(key)
        return True

    def version(self, key: StreamKey) -> int:
        return self.loaded[key][0]

    def writes(self, events: list[NewEvent]) -> list[StreamWrite]:
        grouped: dict[StreamKey, list[NewEvent]] = {}
        for event in events:
            grouped.setdefault((event.stream_type, event.stream_id), []).append(event)
        writes = []
        for key, evs in grouped.items():
            if key not in self.loaded:
                raise RuntimeError(f"decided events for unloaded stream {key}")
            writes.append(StreamWrite(key[0], key[1], self.loaded[key][0], evs))
        return writes

    def committed(self, writes: list[StreamWrite], versions: dict[StreamKey, int]) -> None:
        """After a successful append, cache loaded state plus the appended events."""
        for w in writes:
            key = (w.stream_type, w.stream_id)
            agg = self.loaded[key][1].clone()
            for event in w.events:
                agg.apply(event)
            self.cache.put((self.ctx.tenant_id, *key), versions[key], agg)


class _Unchecked(Exception):
    """The decision read a stream whose version the append will not check."""


@dataclass(frozen=True)
class _Prepared:
    entity_id: str
    args: dict[str, Any]


@dataclass(frozen=True)
class _Spec:
    aggregate: type[Aggregate]
    creates: bool
    prepare: Callable[[CommandContext, str | None, Fields], _Prepared]
    decide: Callable[[UnitOfWork, str, dict[str, Any]], list[NewEvent]]


# ---------------------------------------------------------------- helpers


def _url_id(entity_type: str, entity_id: str | None) -> str:
    if entity_id is None:
        raise InvalidCommand([{"field": f"{entity_type}_id", "message": "is required"}])
    if not ids.validate_id(entity_id):
        raise NotFound(entity_type, entity_id)
    return entity_id


def _existing(uow: UnitOfWork, cls: type[A], entity_id: str) -> A:
    agg = uow.load(cls, entity_id)
    if not agg.exists:
        raise NotFound(cls.stream_type, entity_id)
    return agg


def _generate(ctx: CommandContext, kind: str) -> str:
    return ids.generate(kind, ctx.store.next_id(kind), ctx.now)


def _no_fields(ctx: CommandContext, entity_id: str | None, f: Fields, etype: str) -> _Prepared:
    f.raise_if_invalid()
    return _Prepared(_url_id(etype, entity_id), {})


def _reason(etype: str) -> Callable[[CommandContext, str | None, Fields], _Prepared]:
    def prepare(ctx: CommandContext, entity_id: str | None, f: Fields) -> _Prepared:
        reason = f.text("reason", required=False, max_len=500)
        f.raise_if_invalid()
        return _Prepared(_url_id(etype, entity_id), {"reason": reason})

    return prepare


def _plain(etype: str) -> Callable[[CommandContext, str | None, Fields], _Prepared]:
    return lambda ctx, entity_id, f: _no_fields(ctx, entity_id, f, etype)


# ---------------------------------------------------------------- products


def _prep_product_register(ctx: CommandContext, entity_id: str | None, f: Fields) -> _Prepared:
    product_id = f.ident("product_id", required=False)
    name = f.text("name")
    category = f.text("category", max_len=100)
    currency = f.currency()
    price = f.amount("price", currency)
    f.raise_if_invalid()
    return _Prepared(product_id or _generate(ctx, ids.PRODUCT_KIND),
                     {"name": name, "category": category, "price_minor": price, "currency": currency})


def _product_register(uow: UnitOfWork, pid: str, a: dict[str, Any]) -> list[NewEvent]:
    product = uow.load(Product, pid)
    return product.decide_register(pid, a["name"], a["category"], a["price_minor"], a["currency"])


def _prep_quantity(ctx: CommandContext, entity_id: str | None, f: Fields) -> _Prepared:
    quantity = f.integer("quantity")
    f.raise_if_invalid()
    return _Prepared(_url_id(PRODUCT, entity_id), {"quantity": quantity})


def _product_restock(uow: UnitOfWork, pid: str, a: dict[str, Any]) -> list[NewEvent]:
    return _existing(uow, Product, pid).decide_restock(a["quantity"])


def _prep_price(ctx: CommandContext, entity_id: str | None, f: Fields) -> _Prepared:
    price = f.decimal("price")
    f.raise_if_invalid()
    return _Prepared(_url_id(PRODUCT, entity_id), {"price": price})


def _product_price(uow: UnitOfWork, pid: str, a: dict[str, Any]) -> list[NewEvent]:
    product = _existing(uow, Product, pid)
    return product.decide_change_price(minor_for("price", a["price"], product.currency))


def _prep_reservation(ctx: CommandContext, entity_id: str | None, f: Fields) -> _Prepared:
    order_id = f.ident("order_id")
    quantity = f.integer("quantity")
    f.raise_if_invalid()
    return _Prepared(_url_id(PRODUCT, entity_id), {"order_id": order_id, "quantity": quantity})


def _prep_adjust(ctx: CommandContext, entity_id: str | None, f: Fields) -> _Prepared:
    delta = f.integer("delta")
    if delta == 0:
        f.error("delta", "must not be zero")
    reason = f.choice("reason", ADJUST_REASONS)
    f.raise_if_invalid()
    return _Prepared(_url_id(PRODUCT, entity_id), {"delta": delta, "reason": reason})


def _product_adjust(uow: UnitOfWork, pid: str, a: dict[str, Any]) -> list[NewEvent]:
    return _existing(uow, Product, pid).decide_adjust(a["delta"], a["reason"])


def _product_reserve(uow: UnitOfWork, pid: str, a: dict[str, Any]) -> list[NewEvent]:
    return _existing(uow, Product, pid).decide_reserve(a["order_id"], a["quantity"])


def _product_release(uow: UnitOfWork, pid: str, a: dict[str, Any]) -> list[NewEvent]:
    return _existing(uow, Product, pid).decide_release(a["order_id"], a["quantity"])


# ---------------------------------------------------------------- users


def _prep_user_register(ctx: CommandContext, entity_id: str | None, f: Fields) -> _Prepared:
    user_id = f.ident("user_id", required=False)
    name = f.text("name", required=False)
    email = f.text("email", required=False, max_len=254)
    if email is not None and ("@" not in email or " " in email):
        f.error("email", "must be an email address")
    region = f.text("region", required=False, max_len=100)
    f.raise_if_invalid()
    return _Prepared(user_id or _generate(ctx, ids.USER_KIND),
                     {"name": name, "email": email, "region": region})


def _user_register(uow: UnitOfWork, uid: str, a: dict[str, Any]) -> list[NewEvent]:
    return uow.load(User, uid).decide_register(uid, a["name"], a["email"], a["region"])


# ---------------------------------------------------------------- orders


def _prep_order_place(ctx: CommandContext, entity_id: str | None, f: Fields) -> _Prepared:
    order_id = f.ident("order_id", required=False)
    user_id = f.ident("user_id")
    currency = f.currency()
    channel = f.text("channel", required=False, max_len=50)
    lines = []
    for lf in f.objects("lines", min_items=1, max_items=MAX_LINES):
        product_id = lf.ident("product_id")
        quantity = lf.integer("quantity")
        unit_price = lf.amount("unit_price", currency)
        if product_id is not None and quantity is not None and unit_price is not None:
            lines.append(OrderLine(product_id, quantity, unit_price))
    f.raise_if_invalid()
    return _Prepared(order_id or _generate(ctx, ids.ORDER_KIND),
                     {"user_id": user_id, "currency": currency, "channel": channel or "web", "lines": lines})


def _order_place(uow: UnitOfWork, oid: str, a: dict[str, Any]) -> list[NewEvent]:
    order = uow.load(Order, oid)
    user = uow.load(User, a["user_id"])
    lines: list[OrderLine] = a["lines"]
    products = {line.product_id: uow.load(Product, line.product_id) for line in lines}
    return flows.place_order(order, oid, user, a["user_id"], products, a["currency"], a["channel"], lines)


def _order_confirm(uow: UnitOfWork, oid: str, a: dict[str, Any]) -> list[NewEvent]:
    return _existing(uow, Order, oid).decide_confirm()


def _order_products(uow: UnitOfWork, order: Order) -> dict[str, Product]:
    return {line.product_id: uow.load(Product, line.product_id) for line in order.lines}


def _order_ship(uow: UnitOfWork, oid: str, a: dict[str, Any]) -> list[NewEvent]:
    order = _existing(uow, Order, oid)
    return flows.ship_order(order, _order_products(uow, order))


def _order_deliver(uow: UnitOfWork, oid: str, a: dict[str, Any]) -> list[NewEvent]:
    return _existing(uow, Order, oid).decide_deliver()


def _order_cancel(uow: UnitOfWork, oid: str, a: dict[str, Any]) -> list[NewEvent]:
    order = _existing(uow, Order, oid)
    return flows.cancel_order(order, _order_products(uow, order), a["reason"])


def _prep_refund(etype: str) -> Callable[[CommandContext, str | None, Fields], _Prepared]:
    """``{amount, lines?: [{product_id, quantity}], restock?: bool}``: returned lines go back into
    stock unless ``restock`` is false."""

    def prepare(ctx: CommandContext, entity_id: str | None, f: Fields) -> _Prepared:
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
        return _Prepared(_url_id(etype, entity_id), args)

    return prepare


def _returned_products(uow: UnitOfWork, a: dict[str, Any]) -> dict[str, Product]:
    return {r.product_id: uow.load(Product, r.product_id) for r in a["returns"]}


def _order_refund(uow: UnitOfWork, oid: str, a: dict[str, Any]) -> list[NewEvent]:
    order = _existing(uow, Order, oid)
    amount = minor_for("amount", a["amount"], order.currency)
    payments = {pid: uow.load(Payment, pid) for pid, _ in order.captures}
    return flows.refund_order(order, payments, amount, _returned_products(uow, a), a["returns"], a["restock"])


# ---------------------------------------------------------------- payments


def _prep_payment_initiate(ctx: CommandContext, entity_id: str | None, f: Fields) -> _Prepared:
    payment_id = f.ident("payment_id", required=False)
    order_id = f.ident("order_id")
    currency = f.currency()
    amount = f.amount("amount", currency, allow_zero=False)
    method = f.choice("method", PAYMENT_METHODS)
    f.raise_if_invalid()
    return _Prepared(payment_id or _generate(ctx, ids.PAYMENT_KIND),
                     {"order_id": order_id, "amount_minor": amount, "currency": currency, "method": method})


def _payment_initiate(uow: UnitOfWork, pid: str, a: dict[str, Any]) -> list[NewEvent]:
    payment = uow.load(Payment, pid)
    order = uow.load(Order, a["order_id"])
    return flows.initiate_payment(payment, pid, order, a["order_id"], a["amount_minor"], a["currency"],
                                  a["method"])


def _payment_complete(uow: UnitOfWork, pid: str, a: dict[str, Any]) -> list[NewEvent]:
    payment = _existing(uow, Payment, pid)
    return flows.complete_payment(payment, uow.load(Order, payment.order_id))


def _payment_fail(uow: UnitOfWork, pid: str, a: dict[str, Any]) -> list[NewEvent]:
    return _existing(uow, Payment, pid).decide_fail(a["reason"])


def _payment_refund(uow: UnitOfWork, pid: str, a: dict[str, Any]) -> list[NewEvent]:
    payment = _existing(uow, Payment, pid)
    amount = minor_for("amount", a["amount"], payment.currency)
    return flows.refund_payment(payment, uow.load(Order, payment.order_id), amount,
                                _returned_products(uow, a), a["returns"], a["restock"])


# ---------------------------------------------------------------- sessions


def _prep_session_record(ctx: CommandContext, entity_id: str | None, f: Fields) -> _Prepared:
    if entity_id is None or not ids.validate_id(entity_id):
        f.errors.append({"field": "session_id",
                         "message": "must be a non-empty id of at most 64 characters [A-Za-z0-9._:-]"})
    kind = f.choice("type", tuple(API_EVENT_TYPES))
    user_id = f.ident("user_id", required=False)
    page_url = f.text("page_url", max_len=2048)
    product_id = f.ident("product_id", required=False)
    f.raise_if_invalid()
    assert entity_id is not None and kind is not None
    return _Prepared(entity_id, {"event_type": API_EVENT_TYPES[kind], "user_id": user_id,
                                 "page_url": page_url, "product_id": product_id})


def _session_record(uow: UnitOfWork, sid: str, a: dict[str, Any]) -> list[NewEvent]:
    return uow.load(Session, sid).decide_record(sid, a["event_type"], a["user_id"], a["page_url"],
                                                a["product_id"])


_SPECS: dict[str, _Spec] = {
    "product.register": _Spec(Product, True, _prep_product_register, _product_register),
    "product.restock": _Spec(Product, False, _prep_quantity, _product_restock),
    "product.price": _Spec(Product, False, _prep_price, _product_price),
    "product.adjust": _Spec(Product, False, _prep_adjust, _product_adjust),
    "product.reserve": _Spec(Product, False, _prep_reservation, _product_reserve),
    "product.release": _Spec(Product, False, _prep_reservation, _product_release),
    "user.register": _Spec(User, True, _prep_user_register, _user_register),
    "order.place": _Spec(Order, True, _prep_order_place, _order_place),
    "order.confirm": _Spec(Order, False, _plain(ORDER), _order_confirm),
    "order.cancel": _Spec(Order, False, _reason(ORDER), _order_cancel),
    "order.ship": _Spec(Order, False, _plain(ORDER), _order_ship),
    "order.deliver": _Spec(Order, False, _plain(ORDER), _order_deliver),
    "order.refund": _Spec(Order, False, _prep_refund(ORDER), _order_refund),
    "payment.initiate": _Spec(Payment, True, _prep_payment_initiate, _payment_initiate),
    "payment.complete": _Spec(Payment, False, _plain(PAYMENT), _payment_complete),
    "payment.fail": _Spec(Payment, False, _reason(PAYMENT), _payment_fail),
    "payment.refund": _Spec(Payment, False, _prep_refund(PAYMENT), _payment_refund),
    "session.record": _Spec(Session, False, _prep_session_record, _session_record),
}

COMMAND_NAMES: frozenset[str] = frozenset(_SPECS)

# entity type of each command's primary stream
COMMAND_ENTITY_TYPES: dict[str, str] = {name: spec.aggregate.stream_type for name, spec in _SPECS.items()}
assert set(COMMAND_ENTITY_TYPES.values()) <= {ORDER, PAYMENT, PRODUCT, USER, SESSION}


def execute(ctx: CommandContext, name: str, entity_id: str | None, payload: dict[str, Any]) -> CommandResult:
    spec = _SPECS.get(name)
    if spec is None:
        raise ValueError(f"unknown command {name!r}")
    if ctx.idempotency is not None:  # a repeated key replays before anything else (no new ids)
        existing = ctx.store.get_idempotency(ctx.tenant_id, ctx.idempotency.key)
        if existing is not None:
            return _replayed(ctx, ctx.idempotency, existing)
    cache = ctx.cache if ctx.cache is not None else DEFAULT_CACHE
    prepared = spec.prepare(ctx, entity_id, Fields(payload))
    stream_type = spec.aggregate.stream_type
    primary = (stream_type, prepared.entity_id)
    metadata = dict(ctx.metadata)
    metadata.setdefault("command_id", str(uuid.uuid4()))

    optimistic = ctx.optimistic
    fresh = primary if spec.creates or stream_type == SESSION else None
    attempt = 0
    while True:
        attempt += 1
        uow = UnitOfWork(ctx, cache, optimistic, fresh)
        try:
            uow.load(spec.aggregate, prepared.entity_id)
            current = uow.version(primary)
            if ctx.if_match is not None and ctx.if_match != current:
                raise VersionConflict(stream_type, prepared.entity_id, ctx.if_match, current)
            events = spec.decide(uow, prepared.entity_id, prepared.args)
            if ctx.event_id_seed is not None:
                events = _seeded(events, ctx.event_id_seed)
            writes = uow.writes(events)
            if uow.unchecked and not uow.check_read_only(writes):
                raise _Unchecked
        except (DomainError, NotFound, InvalidCommand, VersionConflict, _Unchecked):
            if not uow.unchecked:
                raise
            optimistic = False  # decided from unchecked state: redo with loads
            attempt -= 1
            continue
        created = spec.creates or current == 0
        record = None
        if ctx.idempotency is not None:
            appended = sum(len(w.events) for w in writes if (w.stream_type, w.stream_id) == primary)
            record = record_for(ctx.idempotency, primary, current + appended, created, writes)
        try:
            result = ctx.store.append(ctx.tenant_id, writes, metadata, record)
        except IdempotencyReplay as replay:  # a concurrent request with the same key committed first
            assert ctx.idempotency is not None
            return _replayed(ctx, ctx.idempotency, replay.record)
        except VersionConflict as exc:
            key = (exc.stream_type, exc.stream_id)
            if key in uow.loaded and exc.actual < uow.version(key):
                cache.evict((ctx.tenant_id, *key))  # cache ahead of the store: it was reset
            if uow.unchecked:
                optimistic = False
                attempt -= 1
                continue
            if ctx.if_match is not None and key == primary:
                raise VersionConflict(stream_type, prepared.entity_id, ctx.if_match, exc.actual) from exc
            if attempt >= MAX_ATTEMPTS:
                raise
            continue
        versions = {
            (w.stream_type, w.stream_id): result.stream_versions.get(
                (w.stream_type, w.stream_id), w.expected_version + len(w.events)
            )
            for w in writes
        }
        uow.committed(writes, versions)
        return CommandResult(
            entity_type=stream_type,
            entity_id=prepared.entity_id,
            stream_version=versions[primary],
            position=result.last_position,
            created=created,
        )


def _seeded(events: list[NewEvent], seed: str) -> list[NewEvent]:
    base = uuid.UUID(seed)
    return [dataclasses.replace(e, event_id=str(uuid.uuid5(base, str(i)))) for i, e in enumerate(events)]


def _replayed(ctx: CommandContext, claim: IdempotencyClaim, record: IdempotencyRecord) -> CommandResult:
    answer = stored_answer(ctx.store, ctx.tenant_id, claim, record)
    return CommandResult(
        entity_type=answer.entity_type,
        entity_id=answer.entity_id,
        stream_version=answer.stream_version,
        position=answer.position,
        created=answer.created,
        replayed=True,
    )


def reset_cache() -> None:
    """Forget cached aggregates (tests that reset the store in-process)."""
    DEFAULT_CACHE.clear()

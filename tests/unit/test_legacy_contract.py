"""Source declarations, the canonical CDC contract and the translators, as pure logic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connectors.legacy.canonical import (
    DELETE,
    INSERT,
    SCHEMA_CHANGE,
    SNAPSHOT,
    NormalizeError,
    UnknownSource,
    normalize,
)
from connectors.legacy.declaration import SourceSpecError, load_source, parse_source
from connectors.legacy.translators import MissingReference, Untranslatable, next_step
from domain.base import Aggregate
from domain.events import NewEvent
from domain.order import Order
from domain.payment import Payment
from domain.product import Product
from domain.user import User

ROOT = Path(__file__).resolve().parents[2]


def _raw(**over: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": "shop", "kind": "postgres", "tenant": "t1",
        "connection": {"host": "h", "port": 5432, "database": "shop", "user": "u", "password": "p"},
        "tables": [{"table": f"public.{t}", "translator": t} for t in ("orders", "payments", "products",
                                                                       "inventory")],
    }
    raw.update(over)
    return raw


SPEC = parse_source(_raw(id_prefix=""))


@pytest.mark.parametrize("over, message", [
    ({"tenant": None}, "tenant is required"),
    ({"tenant_column": "shop"}, "ambiguous"),
    ({"tenant": None, "tenant_column": "shop"}, "tenants map"),
    ({"kind": "oracle"}, "kind must be one of"),
    ({"name": "Bad-Name"}, "name must be"),
    ({"tables": [{"table": "orders", "translator": "orders"}]}, "schema.table"),
    ({"tables": [{"table": "public.orders", "translator": "refunds"}]}, "translator must be one of"),
    ({"tables": []}, "non-empty list"),
    ({"connection": {"host": "h", "port": 1, "database": "d", "user": "u", "password_env": "NOPE_X"}},
     "NOPE_X is not set"),
])
def test_declarations_fail_with_the_field_named(over: dict[str, Any], message: str) -> None:
    raw = _raw(**over)
    if raw.get("tenant") is None:
        raw.pop("tenant")
    with pytest.raises(SourceSpecError, match=message):
        parse_source(raw, env={})


def test_shipped_examples_parse() -> None:
    env = {"SHOP_PG_PASSWORD": "a", "SHOP_MARIA_PASSWORD": "b"}
    pg = load_source(ROOT / "connectors/sources/shop-postgres.yaml", env)
    maria = load_source(ROOT / "connectors/sources/shop-mariadb.yaml", env)
    assert pg.tenant == "acme" and pg.connection.password == "a"
    assert maria.resolve_tenant({"shop_code": "south"}) == "acme-south"
    assert maria.resolve_tenant({"shop_code": "west"}) is None
    assert "password" not in str(pg.public())


def _pg(op: str, table: str, before: Any, after: Any, lsn: int = 100, db: str = "shop") -> dict[str, Any]:
    return {"before": before, "after": after, "op": op, "ts_ms": 2,
            "source": {"connector": "postgresql", "db": db, "schema": "public", "table": table, "lsn": lsn,
                       "txId": 9, "ts_ms": 1}}


def test_postgres_and_mysql_envelopes_become_one_contract() -> None:
    row = {"id": 5, "status": "pending"}
    rec = normalize(SPEC, _pg("c", "orders", None, row), {"id": 5})
    assert rec is not None and rec.operation == INSERT
    assert rec.entity_type == "orders" and rec.entity_id == "5"
    assert rec.position == {"lsn": 100, "tx_id": 9} and rec.tenant == "t1" and rec.commit_ts_ms == 1
    same = normalize(SPEC, _pg("c", "orders", None, row), {"id": 5})
    later = normalize(SPEC, _pg("c", "orders", None, row, lsn=164), {"id": 5})
    assert same is not None and later is not None
    assert rec.record_id == same.record_id and rec.record_id != later.record_id
    maria = parse_source(_raw(kind="mariadb", tables=[{"table": "shop.orders", "translator": "orders"}]))
    value = {"before": row, "after": None, "op": "d", "ts_ms": 2,
             "source": {"connector": "mariadb", "db": "shop", "table": "orders", "file": "binlog.000001",
                        "pos": 400, "row": 1, "ts_ms": 1}}
    rec2 = normalize(maria, value, None)
    assert rec2 is not None and rec2.operation == DELETE and rec2.entity_id == "5" and rec2.row == row
    assert rec2.position["file"] == "binlog.000001" and rec2.position["row"] == 1
    # a snapshot row's id follows its content, not the snapshot's shared position
    snap = normalize(SPEC, _pg("r", "orders", None, row, lsn=1), {"id": 5})
    snap_later = normalize(SPEC, _pg("r", "orders", None, row, lsn=999), {"id": 5})
    assert snap is not None and snap_later is not None and snap.operation == SNAPSHOT
    assert snap.record_id == snap_later.record_id
    ddl = normalize(maria, {"source": {"connector": "mariadb", "db": "shop", "file": "b.1", "pos": 9},
                            "databaseName": "shop", "ddl": "ALTER TABLE orders ADD COLUMN note TEXT"})
    assert ddl is not None and ddl.operation == SCHEMA_CHANGE and ddl.ddl and "ADD COLUMN" in ddl.ddl


def test_what_normalize_refuses_or_skips() -> None:
    assert normalize(SPEC, None) is None  # tombstone
    assert normalize(SPEC, {"ts_ms": 5}) is None  # heartbeat
    assert normalize(SPEC, {"schema": {}, "payload": None}) is None
    with pytest.raises(UnknownSource):
        normalize(SPEC, _pg("c", "refunds", None, {"id": 1}))
    with pytest.raises(UnknownSource):
        normalize(SPEC, _pg("c", "orders", None, {"id": 1}, db="crm"))
    with pytest.raises(NormalizeError, match="REPLICA IDENTITY"):
        normalize(SPEC, _pg("d", "orders", None, None))
    with pytest.raises(NormalizeError):
        normalize(SPEC, {"op": "c", "after": {}})


class State:
    def __init__(self, events: list[NewEvent]) -> None:
        self.events = events

    def _fold(self, cls: type[Aggregate], sid: str) -> Any:
        return cls.fold(e for e in self.events if e.stream_type == cls.stream_type and e.stream_id == sid)

    def order(self, i: str) -> Order:
        return self._fold(Order, i)  # type: ignore[no-any-return]

    def payment(self, i: str) -> Payment:
        return self._fold(Payment, i)  # type: ignore[no-any-return]

    def product(self, i: str) -> Product:
        return self._fold(Product, i)  # type: ignore[no-any-return]

    def user(self, i: str) -> User:
        return self._fold(User, i)  # type: ignore[no-any-return]


def _ev(etype: str, sid: str, stream: str, **data: Any) -> NewEvent:
    return NewEvent(stream, sid, etype, data)


PRODUCT = [_ev("ProductRegistered", "PROD-1", "product", product_id="PROD-1", name="n", category="c",
               price_minor=1000, currency="EUR"),
           _ev("StockReceived", "PROD-1", "product", product_id="PROD-1", quantity=10)]
ORDER_ROW = {"id": 7, "customer_id": 3, "product_id": 1, "quantity": 2, "unit_price_cents": 1000,
             "currency": "EUR", "channel": "web", "status": "pending"}
PLACED = [_ev("UserRegistered", "USR-3", "user", user_id="USR-3", name=None, email=None, region=None),
          _ev("OrderPlaced", "ORD-7", "order", order_id="ORD-7", user_id="USR-3", currency="EUR",
              channel="web", lines=[{"product_id": "PROD-1", "quantity": 2, "unit_price_minor": 1000}],
              total_minor=2000)]


def _step(op: str, table: str, row: dict[str, Any], events: list[NewEvent], before: Any = None) -> Any:
    value = _pg(op, table, before if op != "d" else row, row if op != "d" else None)
    rec = normalize(SPEC, value)
    assert rec is not None
    return next_step(rec, SPEC, State(events))


def test_orders_reconcile_step_by_step() -> None:
    assert _step("c", "orders", ORDER_ROW, PRODUCT).command == "user.register"
    with pytest.raises(MissingReference):
        _step("c", "orders", ORDER_ROW, PLACED[:1])
    place = _step("c", "orders", ORDER_ROW, PRODUCT + PLACED[:1])
    assert place.command == "order.place" and place.payload["lines"][0]["unit_price"] == "10.00"
    assert _step("u", "orders", ORDER_ROW, PRODUCT + PLACED) is None  # already reflected
    shipped = {**ORDER_ROW, "status": "shipped"}
    assert _step("u", "orders", shipped, PRODUCT + PLACED).command == "order.confirm"  # skipped step filled
    confirmed = PRODUCT + PLACED + [_ev("OrderConfirmed", "ORD-7", "order", order_id="ORD-7")]
    assert _step("u", "orders", shipped, confirmed).command == "order.ship"
    assert _step("d", "orders", ORDER_ROW, confirmed).command == "order.cancel"
    with pytest.raises(Untranslatable, match="amended"):
        _step("u", "orders", {**ORDER_ROW, "quantity": 3}, PRODUCT + PLACED)
    with pytest.raises(Untranslatable, match="column 'status' is missing"):
        _step("u", "orders", {k: v for k, v in ORDER_ROW.items() if k != "status"}, PRODUCT + PLACED)


def test_payments_products_inventory() -> None:
    pay = {"id": 9, "order_id": 7, "amount_cents": 2000, "currency": "EUR", "method": "card",
           "status": "completed"}
    with pytest.raises(MissingReference):
        _step("c", "payments", pay, PRODUCT)
    assert _step("c", "payments", pay, PRODUCT + PLACED).command == "payment.initiate"
    initiated = [_ev("PaymentInitiated", "PAY-9", "payment", payment_id="PAY-9", order_id="ORD-7",
                     amount_minor=2000, currency="EUR", method="card")]
    assert _step("u", "payments", pay, PRODUCT + PLACED + initiated).command == "payment.complete"
    with pytest.raises(Untranslatable, match="method"):
        _step("c", "payments", {**pay, "method": "cheque"}, PRODUCT + PLACED)
    prod = {"id": 1, "name": "n", "category": "c", "price_cents": 1200, "currency": "EUR"}
    assert _step("c", "products", prod, []).command == "product.register"
    assert _step("u", "products", prod, PRODUCT).payload == {"price": "12.00"}
    assert _step("d", "products", prod, PRODUCT) is None
    assert _step("u", "inventory", {"product_id": 1, "quantity": 25}, PRODUCT).payload == {"quantity": 15}
    down = _step("u", "inventory", {"product_id": 1, "quantity": 4}, PRODUCT)
    assert (down.command, down.payload) == ("product.adjust", {"delta": -6, "reason": "legacy_sync"})

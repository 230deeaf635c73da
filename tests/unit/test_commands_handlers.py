from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fakes import InMemoryEventStore

from commands import (
    COMMAND_ENTITY_TYPES,
    COMMAND_NAMES,
    AggregateCache,
    CommandContext,
    CommandResult,
    DomainError,
    InvalidCommand,
    NotFound,
    execute,
)
from domain.events import EVENT_TYPES

T = "acme"
NOW = datetime(2024, 6, 1, 9, 30, tzinfo=UTC)


class App:
    def __init__(self) -> None:
        self.store = InMemoryEventStore()
        self.cache = AggregateCache()

    def run(
        self,
        name: str,
        entity_id: str | None = None,
        payload: dict[str, Any] | None = None,
        if_match: int | None = None,
        tenant: str = T,
    ) -> CommandResult:
        ctx = CommandContext(
            tenant, self.store, {"correlation_id": "c-1"}, if_match=if_match, now=NOW, cache=self.cache
        )
        return execute(ctx, name, entity_id, payload or {})

    def fail(
        self, name: str, entity_id: str | None = None, payload: dict[str, Any] | None = None, **kw: Any
    ) -> Exception:
        before = len(self.store.events)
        with pytest.raises((DomainError, InvalidCommand, NotFound)) as exc:
            self.run(name, entity_id, payload, **kw)
        assert len(self.store.events) == before, "nothing may be appended on error"
        return exc.value

    def types(self, stream_type: str, stream_id: str) -> list[str]:
        return self.store.types(T, stream_type, stream_id)

    def product(
        self, pid: str = "PROD-001", stock: int = 10, price: str = "10.00", currency: str = "USD"
    ) -> str:
        self.run(
            "product.register",
            None,
            {"product_id": pid, "name": "Widget", "category": "tools", "price": price, "currency": currency},
        )
        if stock:
            self.run("product.restock", pid, {"quantity": stock})
        return pid

    def user(self, uid: str = "USR-00001") -> str:
        self.run("user.register", None, {"user_id": uid, "name": "Ann"})
        return uid

    def order(self, qty: int = 2, price: str = "15.00", **extra: Any) -> str:
        payload = {
            "user_id": "USR-00001",
            "currency": "USD",
            "lines": [{"product_id": "PROD-001", "quantity": qty, "unit_price": price}],
            **extra,
        }
        return self.run("order.place", None, payload).entity_id

    def pay(self, order_id: str, amount: str = "30.00", complete: bool = True) -> str:
        pid = self.run(
            "payment.initiate",
            None,
            {"order_id": order_id, "amount": amount, "currency": "USD", "method": "card"},
        ).entity_id
        if complete:
            self.run("payment.complete", pid)
        return pid

    def stock(self, pid: str = "PROD-001") -> tuple[int, int]:
        on_hand = reserved = 0
        for e in self.store.stream(T, "product", pid):
            if e.event_type == "StockReceived":
                on_hand += e.data["quantity"]
            elif e.event_type == "StockReserved":
                reserved += e.data["quantity"]
            elif e.event_type == "StockReleased":
                reserved -= e.data["quantity"]
        return on_hand, reserved


@pytest.fixture
def app() -> App:
    return App()


@pytest.fixture
def shop(app: App) -> App:
    app.product()
    app.user()
    return app


def test_command_names() -> None:
    assert {
        "product.register",
        "product.restock",
        "product.adjust",
        "product.price",
        "product.reserve",
        "product.release",
        "user.register",
        "order.place",
        "order.confirm",
        "order.cancel",
        "order.ship",
        "order.deliver",
        "order.refund",
        "payment.initiate",
        "payment.complete",
        "payment.fail",
        "payment.refund",
        "session.record",
    } == COMMAND_NAMES
    assert COMMAND_ENTITY_TYPES["session.record"] == "session"
    with pytest.raises(ValueError):
        App().run("order.teleport", "x")


# ------------------------------------------------------------------ products and users


def test_product_register_generates_id(app: App) -> None:
    r = app.run(
        "product.register", None, {"name": "Lamp", "category": "home", "price": 19.99, "currency": "usd"}
    )
    assert r == CommandResult("product", "PROD-001", 1, 1, True)
    [e] = app.store.events
    assert e.data == {
        "product_id": "PROD-001",
        "name": "Lamp",
        "category": "home",
        "price_minor": 1999,
        "currency": "USD",
    }
    assert e.metadata["correlation_id"] == "c-1" and e.metadata["command_id"]
    assert (
        app.run(
            "product.register", None, {"name": "B", "category": "c", "price": "1", "currency": "EUR"}
        ).entity_id
        == "PROD-002"
    )


def test_product_register_existing_id(app: App) -> None:
    app.product()
    err = app.fail(
        "product.register",
        None,
        {"product_id": "PROD-001", "name": "x", "category": "y", "price": "1", "currency": "USD"},
    )
    assert isinstance(err, DomainError) and err.code == "already_exists"


def test_product_restock_price_reserve_release(app: App) -> None:
    app.product(stock=0)
    r = app.run("product.restock", "PROD-001", {"quantity": 7})
    assert (r.stream_version, r.created) == (2, False)
    r = app.run("product.price", "PROD-001", {"price": "12.5"})
    assert app.store.events[-1].data == {
        "product_id": "PROD-001",
        "old_price_minor": 1000,
        "price_minor": 1250,
        "currency": "USD",
    }
    app.run("product.reserve", "PROD-001", {"order_id": "EXT-1", "quantity": 5})
    err = app.fail("product.reserve", "PROD-001", {"order_id": "EXT-2", "quantity": 3})
    assert isinstance(err, DomainError) and err.code == "insufficient_stock"
    app.run("product.release", "PROD-001", {"order_id": "EXT-1", "quantity": 5})
    assert app.stock() == (7, 0)
    err = app.fail("product.price", "PROD-001", {"price": "1.005"})
    assert isinstance(err, InvalidCommand) and err.errors == [
        {"field": "price", "message": "USD allows at most 2 decimal places"}
    ]


def test_unknown_entity_in_url_is_not_found(app: App) -> None:
    for name in ("product.restock", "order.confirm", "payment.complete"):
        err = app.fail(name, "NOPE-1", {"quantity": 1})
        assert isinstance(err, NotFound)
    err = app.fail("order.confirm", "bad id with spaces")
    assert isinstance(err, NotFound)


def test_user_register(app: App) -> None:
    r = app.run("user.register", None, {"name": "Bo", "email": "bo@example.com", "region": "eu"})
    assert (r.entity_type, r.entity_id, r.created) == ("user", "USR-00001", True)
    assert app.run("user.register", None, {}).entity_id == "USR-00002"
    err = app.fail("user.register", None, {"user_id": "USR-00001"})
    assert isinstance(err, DomainError) and err.code == "already_exists"
    err = app.fail("user.register", None, {"email": "nope"})
    assert isinstance(err, InvalidCommand) and err.errors[0]["field"] == "email"


# ------------------------------------------------------------------ orders


def test_place_order_reserves_stock(shop: App) -> None:
    shop.product("PROD-002", stock=3)
    r = shop.run(
        "order.place",
        None,
        {
            "user_id": "USR-00001",
            "currency": "USD",
            "channel": "mobile",
            "lines": [
                {"product_id": "PROD-001", "quantity": 2, "unit_price": "9.99"},
                {"product_id": "PROD-002", "quantity": 3, "unit_price": 0.1},
            ],
        },
    )
    assert (r.entity_type, r.entity_id, r.stream_version, r.created) == (
        "order",
        "ORD-20240601-0001",
        1,
        True,
    )
    assert r.position == shop.store.events[-1].position
    placed = shop.store.stream(T, "order", r.entity_id)[0]
    assert placed.schema_version == EVENT_TYPES["OrderPlaced"][1]
    assert placed.data["total_minor"] == 2 * 999 + 3 * 10
    assert placed.data["channel"] == "mobile"
    assert shop.stock("PROD-001") == (10, 2) and shop.stock("PROD-002") == (3, 3)
    # one transaction
    assert len({e.transaction_id for e in shop.store.events[-3:]}) == 1


def test_place_order_rejections_append_nothing(shop: App) -> None:
    shop.product("PROD-EUR", currency="EUR")
    base = {"user_id": "USR-00001", "currency": "USD"}

    def place(lines: list[dict[str, Any]], **over: Any) -> Exception:
        return shop.fail("order.place", None, {**base, "lines": lines, **over})

    line = {"product_id": "PROD-001", "quantity": 1, "unit_price": "1"}
    cases = {
        "insufficient_stock": place([{**line, "quantity": 11}]),
        "unknown_product": place([{**line, "product_id": "PROD-404"}]),
        "unknown_user": place([line], user_id="USR-404"),
        "currency_mismatch": place([{**line, "product_id": "PROD-EUR"}]),
        "quantity_out_of_range": place([{**line, "quantity": 0}]),
        "duplicate_line": place([line, line]),
    }
    for expected, err in cases.items():
        assert isinstance(err, DomainError) and err.code == expected, (expected, err)
    # a two-line order short on its second product reserves nothing on the first
    shop.product("PROD-002", stock=1)
    err = place([line, {**line, "product_id": "PROD-002", "quantity": 2}])
    assert isinstance(err, DomainError) and err.code == "insufficient_stock"
    assert shop.stock("PROD-001") == (10, 0)
    assert shop.store.counters.get("order") is None or shop.store.counters["order"] >= 1


def test_place_order_with_explicit_id_twice(shop: App) -> None:
    shop.order(order_id="ORD-LEGACY-1")
    err = shop.fail(
        "order.place",
        None,
        {
            "order_id": "ORD-LEGACY-1",
            "user_id": "USR-00001",
            "currency": "USD",
            "lines": [{"product_id": "PROD-001", "quantity": 1, "unit_price": 1}],
        },
    )
    assert isinstance(err, DomainError) and err.code == "already_exists"


def test_order_validation_collects_all_errors(app: App) -> None:
    err = app.fail(
        "order.place",
        None,
        {
            "user_id": "",
            "currency": "XYZ",
            "channel": 5,
            "lines": [
                {"product_id": "PROD-001", "quantity": "2", "unit_price": "abc"},
                {"quantity": 1.5, "unit_price": -1},
                "not-an-object",
            ],
        },
    )
    assert isinstance(err, InvalidCommand)
    fields = sorted(e["field"] for e in err.errors)
    assert fields == [
        "channel",
        "currency",
        "lines[0].quantity",
        "lines[0].unit_price",
        "lines[1].product_id",
        "lines[1].quantity",
        "lines[1].unit_price",
        "lines[2]",
        "user_id",
    ]
    assert app.store.counters == {}  # no id consumed by a rejected command


def test_order_validation_shapes(app: App) -> None:
    err = app.fail("order.place", None, {"user_id": "U", "currency": "USD", "lines": []})
    assert isinstance(err, InvalidCommand) and err.errors == [
        {"field": "lines", "message": "must have 1-100 items"}
    ]
    err = app.fail(
        "order.place",
        None,
        {
            "user_id": "U",
            "currency": "USD",
            "lines": [{"product_id": "P", "quantity": True, "unit_price": "1.001"}],
        },
    )
    assert isinstance(err, InvalidCommand)
    assert [e["field"] for e in err.errors] == ["lines[0].quantity", "lines[0].unit_price"]
    assert "decimal places" in err.errors[1]["message"]
    err = app.fail("order.place", None, {})
    assert isinstance(err, InvalidCommand)
    assert {e["field"] for e in err.errors} == {"user_id", "currency", "lines"}
    assert all(e["message"] == "is required" for e in err.errors)
    with pytest.raises(InvalidCommand) as exc:
        app.run("order.place", None, ["not", "a", "dict"])  # type: ignore[arg-type]
    assert exc.value.errors[0]["field"] == "body"


def test_order_lifecycle(shop: App) -> None:
    oid = shop.order()
    assert shop.run("order.confirm", oid).stream_version == 2
    pid = shop.pay(oid)
    r = shop.run("order.ship", oid)
    assert (r.stream_version, r.created) == (4, False)
    shop.run("order.deliver", oid)
    assert shop.types("order", oid) == [
        "OrderPlaced",
        "OrderConfirmed",
        "OrderPaymentCaptured",
        "OrderShipped",
        "OrderDelivered",
    ]
    assert shop.types("payment", pid) == ["PaymentInitiated", "PaymentCompleted"]
    err = shop.fail("order.cancel", oid, {"reason": "late"})
    assert isinstance(err, DomainError) and err.code == "order_not_cancellable"


def test_ship_requires_confirmed_and_paid(shop: App) -> None:
    oid = shop.order()
    err = shop.fail("order.ship", oid)
    assert isinstance(err, DomainError) and err.code == "order_not_shippable"
    shop.run("order.confirm", oid)
    err = shop.fail("order.ship", oid)
    assert isinstance(err, DomainError) and err.code == "order_not_paid"
    err = shop.fail("order.deliver", oid)
    assert isinstance(err, DomainError) and err.code == "invalid_transition"


def test_cancel_releases_stock(shop: App) -> None:
    oid = shop.order(qty=4)
    assert shop.stock() == (10, 4)
    r = shop.run("order.cancel", oid, {"reason": "customer request"})
    assert r.stream_version == 2
    assert shop.stock() == (10, 0)
    assert shop.store.events[-2].data == {"order_id": oid, "reason": "customer request"}
    err = shop.fail("order.ship", oid)
    assert isinstance(err, DomainError) and err.code == "order_not_shippable"
    err = shop.fail("order.cancel", oid)
    assert isinstance(err, DomainError) and err.code == "order_not_cancellable"


def test_order_refund_partial_then_full(shop: App) -> None:
    oid = shop.order()
    pid = shop.pay(oid)
    shop.run("order.refund", oid, {"amount": "10"})
    assert shop.store.events[-2].event_type == "OrderRefunded"
    assert shop.store.events[-2].data == {
        "order_id": oid,
        "amount_minor": 1000,
        "currency": "USD",
        "refunded_total_minor": 1000,
        "full": False,
        "lines": [],
        "restock": False,
    }
    assert shop.store.events[-1].data == {
        "payment_id": pid,
        "order_id": oid,
        "amount_minor": 1000,
        "currency": "USD",
    }
    err = shop.fail("order.refund", oid, {"amount": "20.01"})
    assert isinstance(err, DomainError) and err.code == "refund_exceeds_paid"
    shop.run("order.refund", oid, {"amount": 20})
    assert shop.store.events[-2].data["full"] is True
    err = shop.fail("order.refund", oid, {"amount": "0.01"})
    assert isinstance(err, DomainError) and err.code == "refund_exceeds_paid"
    err = shop.fail("payment.refund", pid, {"amount": "0.01"})
    assert isinstance(err, DomainError) and err.code == "refund_exceeds_paid"
    err = shop.fail("order.refund", oid, {"amount": "0"})
    assert isinstance(err, InvalidCommand)


def test_refund_unpaid_order(shop: App) -> None:
    oid = shop.order()
    err = shop.fail("order.refund", oid, {"amount": "1"})
    assert isinstance(err, DomainError) and err.code == "refund_exceeds_paid"


# ------------------------------------------------------------------ payments


def test_payment_initiate_rules(shop: App) -> None:
    oid = shop.order()
    base = {"order_id": oid, "amount": "30.00", "currency": "USD", "method": "card"}
    err = shop.fail("payment.initiate", None, {**base, "currency": "EUR"})
    assert isinstance(err, DomainError) and err.code == "currency_mismatch"
    err = shop.fail("payment.initiate", None, {**base, "amount": "30.01"})
    assert isinstance(err, DomainError) and err.code == "payment_exceeds_outstanding"
    err = shop.fail("payment.initiate", None, {**base, "order_id": "ORD-404"})
    assert isinstance(err, DomainError) and err.code == "unknown_order"
    err = shop.fail(
        "payment.initiate", None, {"order_id": oid, "amount": "0", "currency": "USD", "method": "cash"}
    )
    assert isinstance(err, InvalidCommand)
    assert [e["field"] for e in err.errors] == ["amount", "method"]
    r = shop.run("payment.initiate", None, base)
    assert (r.entity_type, r.created, r.stream_version) == ("payment", True, 1)
    assert r.entity_id.startswith("PAY-20240601-")  # rejected commands may leave gaps in the sequence


def test_payment_complete_writes_both_streams(shop: App) -> None:
    oid = shop.order()
    pid = shop.pay(oid, complete=False)
    r = shop.run("payment.complete", pid)
    assert (r.entity_type, r.stream_version, r.created) == ("payment", 2, False)
    assert [e.event_type for e in shop.store.events[-2:]] == ["PaymentCompleted", "OrderPaymentCaptured"]
    assert shop.store.events[-1].data == {
        "order_id": oid,
        "payment_id": pid,
        "amount_minor": 3000,
        "currency": "USD",
    }
    err = shop.fail("payment.complete", pid)
    assert isinstance(err, DomainError) and err.code == "payment_not_completable"
    err = shop.fail("payment.fail", pid, {"reason": "x"})
    assert isinstance(err, DomainError) and err.code == "payment_not_failable"


def test_payment_fail_then_retry(shop: App) -> None:
    oid = shop.order()
    pid = shop.pay(oid, complete=False)
    shop.run("payment.fail", pid, {"reason": "card declined"})
    assert shop.store.events[-1].data == {"payment_id": pid, "order_id": oid, "reason": "card declined"}
    err = shop.fail("payment.complete", pid)
    assert isinstance(err, DomainError) and err.code == "payment_not_completable"
    shop.pay(oid)  # a second attempt may pay the order


def test_completing_second_payment_beyond_total_is_refused(shop: App) -> None:
    oid = shop.order()
    p1 = shop.pay(oid, complete=False)
    p2 = shop.pay(oid, complete=False)
    shop.run("payment.complete", p1)
    err = shop.fail("payment.complete", p2)
    assert isinstance(err, DomainError) and err.code == "payment_exceeds_outstanding"


def test_payment_on_cancelled_order_refused(shop: App) -> None:
    oid = shop.order()
    pid = shop.pay(oid, complete=False)
    shop.run("order.cancel", oid, {})
    err = shop.fail("payment.complete", pid)
    assert isinstance(err, DomainError) and err.code == "order_not_payable"


def test_payment_refund_writes_pair(shop: App) -> None:
    oid = shop.order()
    pid = shop.pay(oid)
    r = shop.run("payment.refund", pid, {"amount": "30"})
    assert r.stream_version == 3
    assert [(e.event_type, e.stream_id) for e in shop.store.events[-2:]] == [
        ("PaymentRefunded", pid),
        ("OrderRefunded", oid),
    ]
    assert shop.store.events[-1].data["full"] is True
    err = shop.fail("payment.refund", pid, {"amount": "abc"})
    assert isinstance(err, InvalidCommand)


# ------------------------------------------------------------------ sessions


def test_session_record(app: App) -> None:
    r = app.run("session.record", "SES-abc", {"type": "page_view", "page_url": "/home"})
    assert (r.entity_type, r.entity_id, r.stream_version, r.created) == ("session", "SES-abc", 1, True)
    r = app.run(
        "session.record",
        "SES-abc",
        {"type": "checkout", "page_url": "/co", "user_id": "USR-00009", "product_id": "PROD-001"},
    )
    assert (r.stream_version, r.created) == (2, False)
    assert app.types("session", "SES-abc") == ["PageViewed", "CheckoutStarted"]
    assert app.store.events[-1].data == {
        "session_id": "SES-abc",
        "user_id": "USR-00009",
        "page_url": "/co",
        "product_id": "PROD-001",
    }
    err = app.fail("session.record", "SES-abc", {"type": "click", "page_url": "/", "user_id": "USR-00010"})
    assert isinstance(err, DomainError) and err.code == "session_user_mismatch"


def test_session_validation(app: App) -> None:
    err = app.fail("session.record", "bad id!", {"type": "scroll", "user_id": 3})
    assert isinstance(err, InvalidCommand)
    assert [e["field"] for e in err.errors] == ["session_id", "type", "user_id", "page_url"]


def test_tenants_are_isolated(shop: App) -> None:
    err = shop.fail("product.restock", "PROD-001", {"quantity": 1}, tenant="other")
    assert isinstance(err, NotFound)

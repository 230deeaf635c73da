"""Questions answered on a real chdb read model (and, for ``as of``, a real Postgres event store): the
values are checked against a reference computed in Python from the orders this test writes, not
against the metric code.

The shop: three products (gadgets, books, toys), ten orders over the last two days with their fates
(paid by card or PayPal, a failed card payment, cancellations, a refund), ``now`` fixed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from chdb_store import chdb_store
from event_log import EventLog
from sqlalchemy.engine import Engine
from test_time_travel import write

from connectors.clickhouse import ClickHouseStore
from connectors.clickhouse_sink import ClickHouseSink
from connectors.event_store import PostgresEventStore
from readmodels.query import semantic
from readmodels.query.question import live_values, parse_question
from readmodels.query.semantic import SemanticQuery

T = "tenant-qv"
NOW = datetime(2026, 5, 6, 15, 30, tzinfo=UTC)
YESTERDAY_NOON = datetime(2026, 5, 5, 12, 0, tzinfo=UTC)
CATEGORY = {"PROD-001": "gadgets", "PROD-002": "books", "PROD-003": "toys"}


@dataclass(frozen=True)
class Order:
    oid: str
    ago: timedelta  # placed at NOW - ago
    product: str
    qty: int
    price_minor: int
    currency: str
    channel: str
    fate: str  # "paid", "failed" (card payment failed), "cancelled", "refunded" (paid, then refunded)
    method: str = "card"
    fate_after: timedelta = timedelta(minutes=1)

    @property
    def placed(self) -> datetime:
        return NOW - self.ago

    @property
    def total(self) -> int:
        return self.qty * self.price_minor


H = timedelta(hours=1)
ORDERS = [
    Order("ORD-1", 30 * timedelta(minutes=1), "PROD-001", 3, 1000, "USD", "web", "paid"),
    Order("ORD-2", 2 * H, "PROD-002", 1, 2500, "USD", "app", "paid", "paypal"),
    Order("ORD-3", 3 * H, "PROD-001", 2, 1000, "EUR", "web", "failed"),
    Order("ORD-4", 5 * H, "PROD-003", 5, 400, "USD", "web", "cancelled", fate_after=H),
    Order("ORD-5", 20 * H, "PROD-002", 2, 2500, "USD", "web", "refunded", fate_after=19 * H),
    Order("ORD-6", 50 * timedelta(minutes=1), "PROD-003", 1, 400, "USD", "app", "paid"),
    Order("ORD-7", 26 * H, "PROD-001", 1, 1000, "USD", "web", "paid"),
    # placed yesterday 11:30, cancelled yesterday 14:30: live as of yesterday noon, cancelled now
    Order("ORD-8", 28 * H, "PROD-002", 4, 2500, "USD", "app", "cancelled", fate_after=3 * H),
    Order("ORD-9", 40 * H, "PROD-003", 2, 400, "USD", "web", "paid"),
    Order("ORD-10", 10 * timedelta(minutes=1), "PROD-001", 1, 1000, "USD", "web", "paid"),
]


def shop_log() -> EventLog:
    log = EventLog(T, events_per_command=2)
    t0 = NOW - timedelta(days=3)
    for pid, cat in CATEGORY.items():
        log.add("ProductRegistered", pid, t0, product_id=pid, name=pid, category=cat, price_minor=1000,
                currency="USD")  # fmt: skip
        log.add("StockReceived", pid, t0, product_id=pid, quantity=10_000)
    log.add("UserRegistered", "USR-00001", t0, user_id="USR-00001", name="U", email="u@x.io", region="EU")
    for n, o in enumerate(sorted(ORDERS, key=lambda o: o.placed), start=1):
        log.add("StockReserved", o.product, o.placed, product_id=o.product, order_id=o.oid, quantity=o.qty)
        line = {"product_id": o.product, "quantity": o.qty, "unit_price_minor": o.price_minor}
        log.add("OrderPlaced", o.oid, o.placed, order_id=o.oid, user_id="USR-00001", currency=o.currency,
                channel=o.channel, total_minor=o.total, lines=[line])  # fmt: skip
        at, pay = o.placed + o.fate_after, f"PAY-{n:05d}"
        if o.fate == "cancelled":
            log.add("OrderCancelled", o.oid, at, order_id=o.oid, reason="changed mind")
            continue
        log.add("PaymentInitiated", pay, o.placed + timedelta(seconds=30), payment_id=pay, order_id=o.oid,
                amount_minor=o.total, currency=o.currency, method=o.method)  # fmt: skip
        if o.fate == "failed":
            log.add("PaymentFailed", pay, o.placed + timedelta(seconds=40), payment_id=pay, order_id=o.oid,
                    reason="declined")  # fmt: skip
            continue
        paid = o.placed + timedelta(seconds=40)
        log.add("OrderConfirmed", o.oid, paid, order_id=o.oid)
        log.add("PaymentCompleted", pay, paid, payment_id=pay, order_id=o.oid, amount_minor=o.total,
                currency=o.currency)  # fmt: skip
        log.add("OrderPaymentCaptured", o.oid, paid, order_id=o.oid, payment_id=pay, amount_minor=o.total,
                currency=o.currency)  # fmt: skip
        if o.fate == "refunded":
            log.refund(o.oid, pay, at, o.total, o.currency, full=True)
    return log


# ---- the reference: the metric definitions, evaluated in Python over ORDERS ------------------------
def _in(o: Order, until: datetime, span: timedelta) -> bool:
    return until - span < o.placed <= until


def _live(o: Order, state_at: datetime) -> bool:
    return not (o.fate == "cancelled" and o.placed + o.fate_after <= state_at)


def revenue(until: datetime, span: timedelta, currency: str = "USD", state_at: datetime = NOW,
            channel: str | None = None) -> float:  # fmt: skip
    return sum(
        o.total
        for o in ORDERS
        if _in(o, until, span) and _live(o, state_at) and o.currency == currency
        and channel in (None, o.channel)
    ) / 100  # fmt: skip


def order_count(until: datetime, span: timedelta, state_at: datetime = NOW) -> int:
    return sum(1 for o in ORDERS if _in(o, until, span) and _live(o, state_at))


def units(until: datetime, span: timedelta, key: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for o in ORDERS:
        if _in(o, until, span) and _live(o, NOW):
            k = o.product if key == "product" else CATEGORY[o.product]
            out[k] = out.get(k, 0) + o.qty
    return out


def gmv_by_product(until: datetime, span: timedelta, currency: str = "USD") -> dict[str, float]:
    out: dict[str, float] = {}
    for o in ORDERS:  # every line placed, cancelled or not
        if _in(o, until, span) and o.currency == currency:
            out[o.product] = out.get(o.product, 0) + o.total / 100
    return out


def payment_failure_rate(span: timedelta, method: str, currency: str | None = None) -> float:
    paid = [o for o in ORDERS if o.fate != "cancelled" and o.method == method]
    settled = [  # initiated 30 s after placing
        o for o in paid if _in(o, NOW - timedelta(seconds=30), span) and currency in (None, o.currency)
    ]
    return sum(o.fate == "failed" for o in settled) / len(settled)


def refund_rate(span: timedelta, channel: str) -> float:
    paid = [o for o in ORDERS if _in(o, NOW, span) and o.channel == channel and o.fate != "cancelled"]
    paid = [o for o in paid if o.fate != "failed"]
    return sum(o.fate == "refunded" for o in paid) / len(paid)


def orders_per_hour(span: timedelta) -> dict[str, int]:
    out: dict[str, int] = {}
    for o in ORDERS:
        if _in(o, NOW, span) and _live(o, NOW):
            start = o.placed.replace(minute=0, second=0).isoformat().replace("+00:00", "Z")
            out[start] = out.get(start, 0) + 1
    return out


# ---- the read model --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def store() -> Iterator[ClickHouseStore]:
    s = chdb_store("q_values")
    ClickHouseSink(s, None).apply(shop_log().events, None, 0)
    yield s
    s.drop_all()


def ask(store: ClickHouseStore, question: str) -> tuple[SemanticQuery, semantic.Result]:
    q, _ = parse_question(question, "USD", live_values(store.query, T), NOW)
    return q, semantic.execute(store.query, q, T, NOW, "USD")


def by(rows: list[dict[str, Any]], key: str, metric: str) -> dict[str, Any]:
    return {r[key]: r[metric] for r in rows}


DAY = timedelta(hours=24)


def test_the_live_values_are_the_tenants(store: ClickHouseStore) -> None:
    values = live_values(store.query, T)
    assert values("channel") == ["app", "web"] and values("method") == ["card", "paypal"]
    assert values("category") == ["books", "gadgets", "toys"]
    assert live_values(store.query, "tenant-other")("channel") == []


def test_values_of_the_questions(store: ClickHouseStore) -> None:
    _, r = ask(store, "revenue today")
    assert r.rows == [{"revenue": pytest.approx(revenue(NOW, DAY))}] and revenue(NOW, DAY) == 119.0

    _, r = ask(store, "revenue today vs yesterday")
    now_v, then_v = revenue(NOW, DAY), revenue(NOW - DAY, DAY)
    assert r.columns == ["revenue", "revenue_compared", "revenue_change"]
    assert r.rows == [{"revenue": now_v, "revenue_compared": then_v, "revenue_change": now_v - then_v}]
    assert then_v == 18.0  # ORD-8 was cancelled since: the live read model no longer counts it

    _, r = ask(store, "revenue in EUR today")
    assert r.rows == [{"revenue": revenue(NOW, DAY, "EUR")}] and r.currency == "EUR"

    _, r = ask(store, "revenue by channel today")
    assert by(r.rows, "channel", "revenue") == {c: revenue(NOW, DAY, channel=c) for c in ("app", "web")}

    q, r = ask(store, "revenue from the web channel today")
    assert dict(q.filters) == {"channel": "web"} and r.rows == [{"revenue": revenue(NOW, DAY, channel="web")}]

    _, r = ask(store, "top 2 products by units sold today")
    ranked = sorted(units(NOW, DAY, "product").items(), key=lambda kv: -kv[1])[:2]
    assert [(row["product"], row["units_sold"]) for row in r.rows] == ranked
    assert ranked == [("PROD-001", 6), ("PROD-002", 3)]

    _, r = ask(store, "which category sold the most units today")
    assert r.rows == [{"category": "gadgets", "units_sold": units(NOW, DAY, "category")["gadgets"]}]

    _, r = ask(store, "units sold by category this week")
    assert by(r.rows, "category", "units_sold") == units(NOW, 7 * DAY, "category")

    q, r = ask(store, "top 5 products by revenue today")  # answered with GMV, and said so
    assert q.metrics == ("gross_merchandise_value",) and q.notes
    expected = sorted(gmv_by_product(NOW, DAY).items(), key=lambda kv: -kv[1])
    assert [(row["product"], row["gross_merchandise_value"]) for row in r.rows] == expected

    _, r = ask(store, "payment failure rate for card payments today")
    assert r.rows == [{"payment_failure_rate": payment_failure_rate(DAY, "card")}] == [
        {"payment_failure_rate": 0.2}
    ]
    _, r = ask(store, "payment failure rate for card payments in EUR today")
    assert r.rows == [{"payment_failure_rate": payment_failure_rate(DAY, "card", "EUR")}]

    _, r = ask(store, "refund rate by channel today")
    assert by(r.rows, "channel", "refund_rate") == {c: refund_rate(DAY, c) for c in ("app", "web")}

    _, r = ask(store, "orders per hour over the last 6 hours")
    per_hour = orders_per_hour(6 * H)
    assert {k: v for k, v in by(r.rows, "bucket_start", "order_count").items() if v} == per_hour
    assert len(r.rows) == 7  # every bucket of the window, empty ones too

    _, r = ask(store, "which hour had the most orders today")
    best = max(per_hour.items(), key=lambda kv: kv[1])
    assert [(row["bucket_start"], row["order_count"]) for row in r.rows] == [best]


def test_as_of_reads_the_read_model_as_it_stood(engine: Engine, store: ClickHouseStore) -> None:
    """ORD-8 (yesterday 11:30) was cancelled at 14:30: as of yesterday noon it still counted."""
    log = shop_log()
    write(engine, log.events)
    history = PostgresEventStore(engine)

    def ask_past(question: str) -> tuple[SemanticQuery, semantic.Result]:
        q, _ = parse_question(question, "USD", live_values(store.query, T), NOW)
        with semantic.folded(history, store, q, T, NOW) as past:
            return q, semantic.execute(past.query, q, T, NOW, "USD")

    q, r = ask_past("revenue as of yesterday noon")
    assert q.as_of == "2026-05-05T12:00:00Z" and q.window == "1h"
    then = revenue(YESTERDAY_NOON, H, state_at=YESTERDAY_NOON)
    assert r.rows == [{"revenue": then}] and then == 100.0
    live = semantic.execute(store.query, q, T, NOW, "USD")  # the current read model over that hour
    assert live.rows == [{"revenue": revenue(YESTERDAY_NOON, H)}] == [{"revenue": 0.0}]

    _, r = ask_past("orders last 24 hours as of yesterday noon")
    assert r.rows == [{"order_count": order_count(YESTERDAY_NOON, DAY, state_at=YESTERDAY_NOON)}]
    assert r.rows[0]["order_count"] == 2

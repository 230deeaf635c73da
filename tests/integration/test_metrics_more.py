"""The metrics beyond the baseline, their dimensions and series, checked against sums over the events
themselves (not the read-model rows) on a real chdb read model."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from chdb_store import chdb_store
from event_log import EventLog

from connectors.clickhouse import ClickHouseStore
from connectors.clickhouse_sink import ClickHouseSink
from readmodels.metrics import (
    UnsupportedDimension,
    UnsupportedGrain,
    compute_metric,
    compute_series,
)

NOW = datetime.now(UTC).replace(second=0, microsecond=0)
T = "tenant-more"
CATS = {"PROD-001": "kitchen", "PROD-002": "books", "PROD-003": "books"}


def build() -> tuple[EventLog, dict[str, Any]]:
    """A shop over the last 3 hours; returns the log and per-order facts taken from the events."""
    rnd = random.Random(5)
    log = EventLog(T)
    t0 = NOW - timedelta(hours=4)
    for pid, cat in CATS.items():
        log.add(
            "ProductRegistered",
            pid,
            t0,
            product_id=pid,
            name=pid,
            category=cat,
            price_minor=500,
            currency="USD",
        )
        log.add("StockReceived", pid, t0, product_id=pid, quantity=400)
    orders: dict[str, dict[str, Any]] = {}
    for n in range(1, 81):
        at = NOW - timedelta(seconds=rnd.randint(60, 3 * 3600))
        oid = f"ORD-20240501-{n:04d}"
        cur, channel = rnd.choice(["USD", "USD", "EUR"]), rnd.choice(["web", "app"])
        lines = [
            {
                "product_id": rnd.choice(list(CATS)),
                "quantity": rnd.randint(1, 3),
                "unit_price_minor": rnd.choice([500, 1250]),
            }
            for _ in range(rnd.randint(1, 2))
        ]
        total = sum(ln["quantity"] * ln["unit_price_minor"] for ln in lines)
        o: dict[str, Any] = {"at": at, "cur": cur, "channel": channel, "lines": lines, "total": total}
        for ln in lines:
            log.add(
                "StockReserved",
                ln["product_id"],
                at,
                product_id=ln["product_id"],
                order_id=oid,
                quantity=ln["quantity"],
            )
        log.add(
            "OrderPlaced",
            oid,
            at,
            order_id=oid,
            user_id="USR-00001",
            currency=cur,
            channel=channel,
            lines=lines,
            total_minor=total,
        )
        fate = rnd.random()
        if fate < 0.15:
            log.add("OrderCancelled", oid, at + timedelta(seconds=5), order_id=oid, reason="x")
            for ln in lines:
                log.add(
                    "StockReleased",
                    ln["product_id"],
                    at + timedelta(seconds=5),
                    product_id=ln["product_id"],
                    order_id=oid,
                    quantity=ln["quantity"],
                )
            o["cancelled"] = True
        else:
            pay = f"PAY-{n:05d}"
            log.add(
                "PaymentInitiated",
                pay,
                at,
                payment_id=pay,
                order_id=oid,
                amount_minor=total,
                currency=cur,
                method=rnd.choice(["card", "paypal"]),
            )
            o["pay_at"] = at
            if fate < 0.3:
                log.add(
                    "PaymentFailed",
                    pay,
                    at + timedelta(seconds=2),
                    payment_id=pay,
                    order_id=oid,
                    reason="declined",
                )
                o["pay"] = "failed"
            else:
                log.add(
                    "PaymentCompleted",
                    pay,
                    at + timedelta(seconds=2),
                    payment_id=pay,
                    order_id=oid,
                    amount_minor=total,
                    currency=cur,
                )
                log.add(
                    "OrderPaymentCaptured",
                    oid,
                    at + timedelta(seconds=2),
                    order_id=oid,
                    payment_id=pay,
                    amount_minor=total,
                    currency=cur,
                )
                o["pay"], o["paid"] = "completed", True
                if fate > 0.45:
                    shipped = at + timedelta(minutes=rnd.randint(1, 50))
                    if shipped < NOW:
                        log.add("OrderShipped", oid, shipped, order_id=oid)
                        o["shipped"] = shipped
                if fate > 0.85:
                    part = total // 2
                    when = at + timedelta(seconds=30)
                    log.refund(oid, pay, when, part, cur, full=False)
                    o["refunded"], o["pay"] = part, "refunded"
        orders[oid] = o
    sessions: dict[str, list[str]] = {}
    for s in range(1, 31):
        sid = f"SES-{s:04d}"
        start = NOW - timedelta(minutes=rnd.randint(2, 170))
        kinds = ["PageViewed", "ElementClicked", "ItemAddedToCart", "CheckoutStarted"][: rnd.randint(1, 4)]
        for k, kind in enumerate(kinds):
            log.add(
                kind,
                sid,
                start + timedelta(seconds=10 * k),
                session_id=sid,
                user_id=None,
                page_url=f"/{k}",
                product_id=None,
            )
        sessions[sid] = [start, kinds[-1]]  # type: ignore[list-item]
    return log, {"orders": orders, "sessions": sessions}


@pytest.fixture(scope="module")
def shop() -> Iterator[tuple[ClickHouseStore, dict[str, Any]]]:
    store = chdb_store("metrics_more")
    store.drop_all()
    store.ensure_schema()
    log, facts = build()
    ClickHouseSink(store, None).apply(log.events, None, 0)
    yield store, facts
    store.drop_all()


def _in(at: datetime, window: timedelta, now: datetime = NOW) -> bool:
    return now - window < at <= now


def m(store: ClickHouseStore, name: str, window: str = "1h", currency: str = "USD", **filters: str) -> Any:
    return compute_metric(store, T, name, window, currency, NOW, filters=filters)


def test_order_money_metrics(shop: tuple[ClickHouseStore, dict[str, Any]]) -> None:
    store, facts = shop
    hour = [o for o in facts["orders"].values() if _in(o["at"], timedelta(hours=1))]
    live = [o for o in hour if not o.get("cancelled")]
    for cur in ("USD", "EUR"):
        net = sum(o["total"] - o.get("refunded", 0) for o in live if o["cur"] == cur)
        r = m(store, "net_revenue", currency=cur)
        assert r.value == pytest.approx(net / 100) and r.unit == cur
        assert r.components["refunded"] == pytest.approx(
            sum(o.get("refunded", 0) for o in live if o["cur"] == cur) / 100
        )
        gmv = sum(
            ln["quantity"] * ln["unit_price_minor"] for o in hour if o["cur"] == cur for ln in o["lines"]
        )
        assert m(store, "gross_merchandise_value", currency=cur).value == pytest.approx(gmv / 100)
    web = sum(o["total"] - o.get("refunded", 0) for o in live if o["cur"] == "USD" and o["channel"] == "web")
    assert m(store, "net_revenue", channel="web").value == pytest.approx(web / 100)
    paid = [o for o in hour if o.get("paid")]
    refunded = [o for o in paid if o.get("refunded")]
    rr = m(store, "refund_rate")
    assert rr.components == {"refunded_orders": len(refunded), "paid_orders": len(paid)}
    assert rr.value == pytest.approx(len(refunded) / len(paid))
    eur_paid = [o for o in paid if o["cur"] == "EUR"]
    by_eur = compute_metric(store, T, "refund_rate", "1h", "USD", NOW, filters={"currency": "EUR"})
    assert by_eur.components["paid_orders"] == len(eur_paid)


def test_units_and_stock(shop: tuple[ClickHouseStore, dict[str, Any]]) -> None:
    store, facts = shop
    window = timedelta(hours=6)
    lines = [
        ln
        for o in facts["orders"].values()
        if _in(o["at"], window) and not o.get("cancelled")
        for ln in o["lines"]
    ]
    assert m(store, "units_sold", "6h").value == sum(ln["quantity"] for ln in lines)
    books = sum(ln["quantity"] for ln in lines if CATS[ln["product_id"]] == "books")
    assert m(store, "units_sold", "6h", category="books").value == books
    p1 = sum(ln["quantity"] for ln in lines if ln["product_id"] == "PROD-001")
    assert m(store, "units_sold", "6h", product="PROD-001").value == p1
    reserved: dict[str, int] = defaultdict(int)
    for o in facts["orders"].values():
        if not o.get("cancelled"):
            for ln in o["lines"]:
                reserved[ln["product_id"]] += ln["quantity"]
    stock = m(store, "stock_on_hand", "now")
    assert stock.components == {"on_hand": 1200, "reserved": sum(reserved.values())}
    assert stock.value == 1200 - sum(reserved.values())
    assert m(store, "stock_on_hand", "now", product="PROD-002").value == 400 - reserved["PROD-002"]


def test_payment_failures_sessions_and_fulfilment(shop: tuple[ClickHouseStore, dict[str, Any]]) -> None:
    store, facts = shop
    day = timedelta(hours=24)
    paid = [o for o in facts["orders"].values() if "pay_at" in o and _in(o["pay_at"], day)]
    failed = [o for o in paid if o["pay"] == "failed"]
    pf = m(store, "payment_failure_rate", "24h")
    assert pf.components == {"failed": len(failed), "settled": len(paid)}
    sessions = [s for s in facts["sessions"].values() if _in(s[0], timedelta(hours=6))]
    carts = [s for s in sessions if s[1] in ("ItemAddedToCart", "CheckoutStarted")]
    abandoned = [s for s in carts if s[1] == "ItemAddedToCart"]
    ca = m(store, "cart_abandonment_rate", "6h")
    assert ca.components == {"abandoned": len(abandoned), "carts": len(carts)}
    assert ca.value == pytest.approx(len(abandoned) / len(carts))
    leads = sorted(
        (o["shipped"] - o["at"]).total_seconds()
        for o in facts["orders"].values()
        if o.get("shipped") and _in(o["shipped"], day)
    )
    p95 = m(store, "fulfilment_time_p95", "24h")
    assert p95.components["shipped_orders"] == len(leads) > 5
    # quantileExactInclusive: linear interpolation between closest ranks
    rank = 0.95 * (len(leads) - 1)
    lo = int(rank)
    expected = leads[lo] + (leads[min(lo + 1, len(leads) - 1)] - leads[lo]) * (rank - lo)
    assert p95.value == pytest.approx(expected, abs=0.01)
    recent = [
        o for o in facts["orders"].values() if o.get("shipped") and _in(o["shipped"], timedelta(minutes=5))
    ]
    assert m(store, "fulfilment_time_p95", "5m").components["shipped_orders"] == len(recent)
    assert compute_metric(store, "nobody", "fulfilment_time_p95", "5m", "USD", NOW).value == 0.0


def test_series_buckets_add_up_to_the_window(shop: tuple[ClickHouseStore, dict[str, Any]]) -> None:
    store, facts = shop
    unit, points = compute_series(store, T, "order_count", "6h", "1h", "USD", NOW)
    assert unit == "orders" and len(points) in (6, 7)
    live = [
        o for o in facts["orders"].values() if not o.get("cancelled") and _in(o["at"], timedelta(hours=6))
    ]
    assert sum(p["value"] for p in points) == len(live)
    for p in points:
        assert p["value"] == sum(1 for o in live if p["start"] <= o["at"] < p["end"])
    _, rev = compute_series(store, T, "revenue", "1h", "5m", "EUR", NOW, {"channel": "app"})
    eur_app = [
        o
        for o in facts["orders"].values()
        if not o.get("cancelled") and o["cur"] == "EUR" and o["channel"] == "app"
    ]
    assert sum(p["value"] for p in rev) == pytest.approx(
        sum(o["total"] for o in eur_app if _in(o["at"], timedelta(hours=1))) / 100
    )
    with pytest.raises(UnsupportedGrain):
        compute_series(store, T, "order_count", "5m", "1h", "USD", NOW)
    with pytest.raises(UnsupportedGrain):
        compute_series(store, T, "error_rate", "1h", "5m", "USD", NOW)
    with pytest.raises(UnsupportedDimension):
        m(store, "order_count", category="books")

"""Time travel from the event store (real Postgres, real chdb): metric as_of and the order timeline.

The reference for a metric as_of T is the live read model built from exactly the events that had
occurred by T (the ClickHouse sink over that prefix) evaluated at T: historical_metric must equal it
for every metric, while a later cancellation or refund leaves it unchanged.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from chdb_store import chdb_store
from event_log import EventLog
from sqlalchemy.engine import Engine

from connectors.clickhouse import SCRATCH_PREFIX, ClickHouseStore
from connectors.clickhouse_sink import ClickHouseSink
from connectors.event_store import PostgresEventStore
from domain.events import RecordedEvent
from readmodels.metrics import METRICS, NOW, compute_metric, compute_series
from readmodels.time_travel import (
    TimeTravelTooLarge,
    historical_metric,
    historical_series,
    order_timeline,
)

T_NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def live() -> Iterator[ClickHouseStore]:
    s = chdb_store("tt_live")
    yield s
    s.drop_all()


def write(engine: Engine, events: list[RecordedEvent]) -> None:
    """Store events as recorded (explicit positions and times), as if appended at those instants."""
    with engine.begin() as conn:
        for e in events:
            conn.exec_driver_sql(
                "INSERT INTO events (position, tenant_id, stream_type, stream_id, stream_version, event_id, "
                "event_type, schema_version, data, metadata, occurred_at, recorded_at) VALUES (%(p)s, %(t)s, "
                "%(st)s, %(sid)s, %(v)s, %(id)s, %(et)s, %(sv)s, %(d)s::jsonb, %(m)s::jsonb, %(o)s, %(r)s)",
                {
                    "p": e.position,
                    "t": e.tenant_id,
                    "st": e.stream_type,
                    "sid": e.stream_id,
                    "v": e.stream_version,
                    "id": e.event_id,
                    "et": e.event_type,
                    "sv": e.schema_version,
                    "d": json.dumps(e.data),
                    "m": json.dumps(e.metadata),
                    "o": e.occurred_at,
                    "r": e.recorded_at,
                },
            )


def reference(events: list[RecordedEvent], until: datetime) -> ClickHouseStore:
    """The live read model had it applied exactly the events that occurred by ``until``."""
    ref = chdb_store(f"tt_ref_{uuid.uuid4().hex[:8]}")
    ClickHouseSink(ref, None).apply([e for e in events if e.occurred_at <= until], None, 0)
    return ref


def _product(log: EventLog, pid: str, category: str, at: datetime) -> None:
    log.add(
        "ProductRegistered",
        pid,
        at,
        product_id=pid,
        name=pid,
        category=category,
        price_minor=1000,
        currency="USD",
    )
    log.add("StockReceived", pid, at, product_id=pid, quantity=10_000)


def _place(
    log: EventLog,
    oid: str,
    at: datetime,
    total: int,
    cur: str = "USD",
    pid: str = "PROD-001",
    channel: str = "web",
) -> None:
    log.add("StockReserved", pid, at, product_id=pid, order_id=oid, quantity=1)
    log.add(
        "OrderPlaced",
        oid,
        at,
        order_id=oid,
        user_id="USR-00001",
        currency=cur,
        channel=channel,
        lines=[{"product_id": pid, "quantity": 1, "unit_price_minor": total}],
        total_minor=total,
    )


def _pay(log: EventLog, oid: str, pay: str, at: datetime, total: int, cur: str = "USD") -> None:
    log.add(
        "PaymentInitiated",
        pay,
        at,
        payment_id=pay,
        order_id=oid,
        amount_minor=total,
        currency=cur,
        method="card",
    )
    log.add("PaymentCompleted", pay, at, payment_id=pay, order_id=oid, amount_minor=total, currency=cur)
    log.add("OrderPaymentCaptured", oid, at, order_id=oid, payment_id=pay, amount_minor=total, currency=cur)


def busy_shop(tenant: str, seed: int = 3) -> EventLog:
    """Orders over three hours whose later fates (cancel, pay/fail, ship, deliver, refund) come minutes
    to an hour after placement, plus sessions: the state at an instant differs from the current one."""
    rnd = random.Random(seed)
    log = EventLog(tenant, events_per_command=2)
    t0 = T_NOW - timedelta(hours=4)
    for i, cat in enumerate(["kitchen", "books", "toys"], start=1):
        _product(log, f"PROD-{i:03d}", cat, t0)
    log.add("UserRegistered", "USR-00001", t0, user_id="USR-00001", name="U", email="u@x.io", region="EU")
    for n in range(1, 71):
        oid = f"ORD-20240501-{n:04d}"
        at = T_NOW - timedelta(minutes=rnd.randint(1, 180), seconds=rnd.randint(0, 59))
        cur = "EUR" if n % 4 == 0 else "USD"
        total = 100 * rnd.randint(5, 90)
        _place(log, oid, at, total, cur, f"PROD-{rnd.randint(1, 3):03d}", rnd.choice(["web", "app"]))
        later = at + timedelta(minutes=rnd.randint(1, 60))
        fate = rnd.random()
        if fate < 0.2:
            log.add("OrderCancelled", oid, later, order_id=oid, reason="changed mind")
            continue
        pay = f"PAY-{n:05d}"
        if fate < 0.3:
            log.add(
                "PaymentInitiated",
                pay,
                later,
                payment_id=pay,
                order_id=oid,
                amount_minor=total,
                currency=cur,
                method="card",
            )
            log.add(
                "PaymentFailed",
                pay,
                later + timedelta(seconds=5),
                payment_id=pay,
                order_id=oid,
                reason="declined",
            )
            continue
        log.add("OrderConfirmed", oid, later, order_id=oid)
        _pay(log, oid, pay, later + timedelta(seconds=30), total, cur)
        if fate > 0.5:
            log.add("OrderShipped", oid, later + timedelta(minutes=rnd.randint(2, 50)), order_id=oid)
        if fate > 0.85:
            when = later + timedelta(minutes=55)
            log.refund(oid, pay, when, total, cur, full=True)
    kinds = ["PageViewed", "ElementClicked", "ItemAddedToCart", "CheckoutStarted"]
    for s in range(1, 31):
        sid = f"SES-{s:04d}"
        start = T_NOW - timedelta(minutes=rnd.randint(1, 170))
        for k in range(rnd.randint(1, 4)):
            log.add(
                kinds[k],
                sid,
                start + timedelta(minutes=7 * k),
                session_id=sid,
                user_id=None,
                page_url=f"/p/{k}",
                product_id=None,
            )
    return log


def _value(
    store: ClickHouseStore, tenant: str, name: str, window: str, at: datetime, filters: Any = None
) -> tuple[Any, Any]:
    r = compute_metric(store, tenant, name, window, "USD", at, filters=filters)
    return r.value, r.components


# one value per dimension the busy shop fills
DIMENSION_VALUES = {
    "currency": "EUR",
    "channel": "web",
    "category": "kitchen",
    "product": "PROD-002",
    "method": "card",
}


def test_every_metric_as_of_equals_the_read_model_of_the_events_up_to_that_instant(
    engine: Engine, live: ClickHouseStore
) -> None:
    log = busy_shop("tenant-tt")
    write(engine, log.events)
    pg = PostgresEventStore(engine)
    # the read model of every event: what "current rows filtered by time" would read
    current = reference(log.events, T_NOW + timedelta(days=1))
    checked = moved_on = 0
    try:
        for back in (timedelta(minutes=75), timedelta(minutes=20), timedelta(0)):
            at = T_NOW - back
            ref = reference(log.events, at)
            try:
                for name, m in sorted(METRICS.items()):
                    for window in [w for w in m.windows if w in ("15m", "1h", "24h", NOW)]:
                        expected = _value(ref, "tenant-tt", name, window, at)
                        got = historical_metric(pg, live, "tenant-tt", name, window, "USD", at)
                        assert (got.value, got.components) == expected, (name, window, back)
                        checked += 1
                        moved_on += _value(current, "tenant-tt", name, window, at) != expected
                    for dim in m.dimensions:  # dimension filters read the same folded columns
                        window = m.windows[-1]
                        f = {dim: DIMENSION_VALUES[dim]}
                        expected = _value(ref, "tenant-tt", name, window, at, f)
                        got = historical_metric(pg, live, "tenant-tt", name, window, "USD", at, filters=f)
                        assert (got.value, got.components) == expected, (name, dim, back)
            finally:
                ref.drop_all()
    finally:
        current.drop_all()
    assert checked > 60
    # the shop's state moved on: current rows anchored at the instant would have answered differently
    assert moved_on > 20
    left = live.query(
        "SELECT name FROM system.databases WHERE startsWith(name, {p:String})", {"p": SCRATCH_PREFIX}
    )
    assert left == []  # every scratch database was dropped


def test_series_as_of_equals_the_series_of_the_events_up_to_that_instant(
    engine: Engine, live: ClickHouseStore
) -> None:
    log = busy_shop("tenant-ts", seed=5)
    write(engine, log.events)
    pg = PostgresEventStore(engine)
    at = T_NOW - timedelta(minutes=40)
    ref = reference(log.events, at)
    try:
        for name, window, grain in [
            ("revenue", "1h", "5m"),
            ("net_revenue", "6h", "1h"),
            ("units_sold", "1h", "1m"),
        ]:
            if grain not in METRICS[name].grains:
                continue
            expected = compute_series(ref, "tenant-ts", name, window, grain, "USD", at)
            assert historical_series(pg, live, "tenant-ts", name, window, grain, "USD", at) == expected, name
            assert any(p["value"] for p in expected[1]), name
    finally:
        ref.drop_all()


def test_as_of_before_a_cancellation_and_a_refund_is_the_value_before_them(
    engine: Engine, live: ClickHouseStore
) -> None:
    log = EventLog("tenant-c", events_per_command=2)
    t = T_NOW - timedelta(minutes=30)
    _product(log, "PROD-001", "kitchen", t - timedelta(hours=2))
    _place(log, "ORD-20240501-0001", t, 5000)  # cancelled later
    _place(log, "ORD-20240501-0002", t + timedelta(minutes=1), 3000)  # paid, refunded later
    _pay(log, "ORD-20240501-0002", "PAY-00002", t + timedelta(minutes=2), 3000)
    _place(log, "ORD-20240501-0003", t - timedelta(minutes=90), 700)  # before the 1h window at as_of
    before = t + timedelta(minutes=5)
    _place(log, "ORD-20240501-0004", before + timedelta(minutes=1), 900)  # after as_of
    log.add(
        "OrderCancelled",
        "ORD-20240501-0001",
        t + timedelta(minutes=10),
        order_id="ORD-20240501-0001",
        reason="x",
    )
    log.add(
        "OrderRefunded",
        "ORD-20240501-0002",
        t + timedelta(minutes=12),
        order_id="ORD-20240501-0002",
        amount_minor=3000,
        currency="USD",
        refunded_total_minor=3000,
        full=True, lines=[], restock=False
    )
    write(engine, log.events)
    pg = PostgresEventStore(engine)

    def hist(name: str, window: str, at: datetime) -> float:
        return historical_metric(pg, live, "tenant-c", name, window, "USD", at).value

    # at `before`: orders 1 and 2 in the hour ending there; 3 was placed before it, 4 after it
    assert hist("revenue", "1h", before) == 80.0
    assert hist("order_count", "1h", before) == 2
    assert hist("net_revenue", "1h", before) == 80.0
    assert hist("refund_rate", "1h", before) == 0.0
    assert hist("revenue", "6h", before) == 87.0  # the 6h window reaches order 3
    assert hist("revenue", "5m", before) == 30.0  # order 1 (placed at t) is outside the last 5 minutes

    # now: the cancellation and the refund have happened; as_of = now equals the live read model
    live_ref = reference(log.events, T_NOW)
    try:
        for name in ("revenue", "order_count", "net_revenue", "refund_rate", "units_sold", "stock_on_hand"):
            window = "1h" if name != "stock_on_hand" else NOW
            now_value = _value(live_ref, "tenant-c", name, window, T_NOW)[0]
            assert hist(name, window, T_NOW) == now_value, name
        assert _value(live_ref, "tenant-c", "revenue", "1h", T_NOW)[0] == 39.0  # 30 + 9; order 1 cancelled
        assert _value(live_ref, "tenant-c", "net_revenue", "1h", T_NOW)[0] == 9.0
    finally:
        live_ref.drop_all()
    # stock: orders 1-3 had reserved a unit each by `before` (order 4 reserved after it)
    assert hist("stock_on_hand", NOW, before) == 10_000 - 3
    assert hist("stock_on_hand", NOW, t - timedelta(hours=3)) == 0  # before the product existed
    # the other tenant's events never count
    assert historical_metric(pg, live, "tenant-x", "revenue", "1h", "USD", before).value == 0.0


def test_time_travel_is_bounded(engine: Engine, live: ClickHouseStore) -> None:
    log = EventLog("tenant-b", events_per_command=2)
    _product(log, "PROD-001", "kitchen", T_NOW - timedelta(hours=1))
    for n in range(1, 6):
        _place(log, f"ORD-20240501-{n:04d}", T_NOW - timedelta(minutes=n), 100)
    write(engine, log.events)
    pg = PostgresEventStore(engine)
    with pytest.raises(TimeTravelTooLarge):
        historical_metric(pg, live, "tenant-b", "revenue", "1h", "USD", T_NOW, max_events=4)
    assert historical_metric(pg, live, "tenant-b", "revenue", "1h", "USD", T_NOW, max_events=5).value == 5.0
    # only the window's streams are read: two orders placed in the 5 minutes ending at as_of
    assert (
        historical_metric(
            pg, live, "tenant-b", "order_count", "5m", "USD", T_NOW - timedelta(minutes=4), max_events=2
        ).value
        == 2
    )


def test_leftover_scratch_databases_are_swept(
    live: ClickHouseStore, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = f"{SCRATCH_PREFIX}1000_{uuid.uuid4().hex}"
    live.client.command(f"CREATE DATABASE {stale}")
    # a store that has not swept yet, whatever this one's earlier reads did (restored afterwards)
    monkeypatch.setattr(live, "_swept", False)
    historical_metric(PostgresEventStore(engine), live, "tenant-s", "revenue", "1h", "USD", T_NOW)
    left = live.query(
        "SELECT name FROM system.databases WHERE startsWith(name, {p:String})", {"p": SCRATCH_PREFIX}
    )
    assert left == []


def test_order_timeline_lists_every_event_with_stage_durations(engine: Engine) -> None:
    log = EventLog("tenant-t", events_per_command=2)
    t = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    oid = "ORD-20240501-0001"
    _product(log, "PROD-001", "kitchen", t - timedelta(days=1))
    _place(log, oid, t, 2500)
    log.add("OrderConfirmed", oid, t + timedelta(seconds=60), order_id=oid)
    _pay(log, oid, "PAY-00001", t + timedelta(seconds=180), 2500)
    log.add("OrderShipped", oid, t + timedelta(hours=2), order_id=oid)
    log.add("OrderDelivered", oid, t + timedelta(days=1, hours=2), order_id=oid)
    other = "ORD-20240501-0002"
    _place(log, other, t, 100)
    log.add("OrderCancelled", other, t + timedelta(minutes=3), order_id=other, reason="x")
    write(engine, log.events)
    pg = PostgresEventStore(engine)

    tl = order_timeline(pg, "tenant-t", oid)
    assert tl is not None
    order_events = [e for e in log.events if e.stream_id == oid]
    assert [e["position"] for e in tl["events"]] == [e.position for e in order_events]
    assert [e["event_type"] for e in tl["events"]] == [
        "OrderPlaced",
        "OrderConfirmed",
        "OrderPaymentCaptured",
        "OrderShipped",
        "OrderDelivered",
    ]
    assert [e["stream_version"] for e in tl["events"]] == [1, 2, 3, 4, 5]
    assert tl["events"][0]["occurred_at"] == t and tl["events"][0]["seconds_since_previous"] is None
    assert [s["stage"] for s in tl["stages"]] == ["placed", "confirmed", "paid", "shipped", "delivered"]
    assert [(d["from"], d["to"], d["seconds"]) for d in tl["stage_durations"]] == [
        ("placed", "confirmed", 60.0),
        ("confirmed", "paid", 120.0),
        ("paid", "shipped", 7020.0),
        ("shipped", "delivered", 86400.0),
    ]
    assert tl["total_seconds"] == 93600.0 and tl["current_stage"] == "delivered"
    assert tl["events"][-1]["seconds_since_placed"] == 93600.0
    assert all(e["projected"] for e in tl["events"])

    # as of an instant: the events up to it
    mid = order_timeline(pg, "tenant-t", oid, as_of=t + timedelta(hours=1))
    assert mid is not None and mid["current_stage"] == "paid" and mid["event_count"] == 3

    cancelled = order_timeline(pg, "tenant-t", other)
    assert cancelled is not None
    assert [(d["from"], d["to"], d["seconds"]) for d in cancelled["stage_durations"]] == [
        ("placed", "cancelled", 180.0)
    ]
    assert order_timeline(pg, "tenant-t", "ORD-NOPE") is None
    assert order_timeline(pg, "tenant-other", oid) is None
    assert order_timeline(pg, "tenant-t", oid, as_of=t - timedelta(seconds=1)) is None

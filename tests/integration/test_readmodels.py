"""ClickHouse read models on a real chdb engine (one data path per pytest process)."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from chdb_store import chdb_store
from event_log import EventLog

from connectors.clickhouse import ClickHouseStore
from connectors.clickhouse_sink import ClickHouseSink
from domain.events import RecordedEvent
from projections.entities import fold_entity, fold_entity_row
from projections.rows import TABLES
from readmodels.entities import get_entity
from readmodels.metrics import METRICS, UnknownMetric, UnsupportedWindow, compute_metric

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def store() -> Iterator[ClickHouseStore]:
    s = chdb_store("rm_test")
    yield s
    s.drop_all()


class Log(EventLog):
    def __init__(self, tenant: str) -> None:
        super().__init__(tenant, events_per_command=2)


def shop(tenant: str, n_orders: int = 60, seed: int = 7) -> Log:
    """A small shop: products, users, orders through every lifecycle, payments, sessions."""
    rnd = random.Random(seed)
    log = Log(tenant)
    t = NOW - timedelta(hours=2)
    cats = ["kitchen", "apparel", "books"]
    for i in range(1, 6):
        pid = f"PROD-{i:03d}"
        log.add(
            "ProductRegistered",
            pid,
            t,
            product_id=pid,
            name=f"P{i}",
            category=cats[i % 3],
            price_minor=1000 * i,
            currency="USD",
        )
        log.add("StockReceived", pid, t, product_id=pid, quantity=1000)
    for i in range(1, 6):
        uid = f"USR-{i:05d}"
        log.add("UserRegistered", uid, t, user_id=uid, name=f"U{i}", email=f"u{i}@x.io", region="EU")
    for n in range(1, n_orders + 1):
        at = NOW - timedelta(minutes=rnd.randint(1, 110))
        oid = f"ORD-20240501-{n:04d}"
        cur = "EUR" if n % 5 == 0 else "USD"
        lines: list[dict[str, Any]] = [
            {
                "product_id": f"PROD-{rnd.randint(1, 5):03d}",
                "quantity": rnd.randint(1, 3),
                "unit_price_minor": 1000 * rnd.randint(1, 5),
            }
            for _ in range(rnd.randint(1, 3))
        ]
        total = sum(ln["quantity"] * ln["unit_price_minor"] for ln in lines)
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
            user_id=f"USR-{rnd.randint(1, 5):05d}",
            currency=cur,
            channel="web",
            lines=lines,
            total_minor=total,
        )
        fate = rnd.random()
        if fate < 0.15:
            log.add("OrderCancelled", oid, at, order_id=oid, reason="x")
            for ln in lines:
                log.add(
                    "StockReleased",
                    ln["product_id"],
                    at,
                    product_id=ln["product_id"],
                    order_id=oid,
                    quantity=ln["quantity"],
                )
            continue
        pay = f"PAY-{n:05d}"
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
        if fate < 0.25:
            log.add("PaymentFailed", pay, at, payment_id=pay, order_id=oid, reason="declined")
            continue
        log.add("PaymentCompleted", pay, at, payment_id=pay, order_id=oid, amount_minor=total, currency=cur)
        log.add(
            "OrderPaymentCaptured", oid, at, order_id=oid, payment_id=pay, amount_minor=total, currency=cur
        )
        log.add("OrderConfirmed", oid, at, order_id=oid)
        if fate > 0.5:
            log.add("OrderShipped", oid, at, order_id=oid)
        if fate > 0.7:
            log.add("OrderDelivered", oid, at, order_id=oid)
        if fate > 0.9:
            log.refund(oid, pay, at, total, cur, full=True)
    kinds = ["PageViewed", "ElementClicked", "ItemAddedToCart", "CheckoutStarted"]
    for s in range(1, 21):
        sid = f"SES-{s:04d}"
        start = NOW - timedelta(minutes=rnd.choice([1, 2, 30, 90]))
        for k in range(rnd.randint(1, 4)):
            log.add(
                kinds[k],
                sid,
                start + timedelta(seconds=20 * k),
                session_id=sid,
                user_id=None,
                page_url=f"/p/{k}",
                product_id=None,
            )
    return log


def table_rows(store: ClickHouseStore, tenant: str) -> dict[str, list[dict[str, Any]]]:
    return {t: store.select_rows(t, tenant, order_by="tenant_id") for t in TABLES}


def canon(rows: dict[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
    return {t: sorted(repr(sorted(r.items())) for r in rs) for t, rs in rows.items()}


def test_entities_match_fold_and_replay_is_idempotent(store: ClickHouseStore) -> None:
    log = shop("tenant-a")
    sink = ClickHouseSink(store, None)
    for i in range(0, len(log.events), 100):
        sink.apply(log.events[i : i + 100], None, 0)
    before = canon(table_rows(store, "tenant-a"))
    assert len(before["events"]) == len(log.events)

    # replay everything with a cold cache (a restarted projector): nothing changes
    ClickHouseSink(store, None).apply(log.events, None, 0)
    assert canon(table_rows(store, "tenant-a")) == before

    for etype, eid in [
        ("order", "ORD-20240501-0001"),
        ("order", "ORD-20240501-0005"),
        ("product", "PROD-002"),
        ("user", "USR-00003"),
        ("session", "SES-0002"),
    ]:
        live = get_entity(store, "tenant-a", etype, eid)
        folded = fold_entity_row(etype, eid, log.events)
        assert live is not None and folded is not None
        assert live.data == folded.data, etype
        assert (live.version, live.last_updated) == (folded.version, folded.last_updated)
    assert get_entity(store, "tenant-a", "order", "ORD-missing") is None
    assert get_entity(store, "tenant-b", "order", "ORD-20240501-0001") is None
    assert get_entity(store, "tenant-a", "nope", "x") is None
    user = get_entity(store, "tenant-a", "user", "USR-00001")
    assert user is not None and isinstance(user.data["preferred_category"], str)


def test_metrics(store: ClickHouseStore) -> None:
    log = shop("tenant-m", seed=11)
    ClickHouseSink(store, None).apply(log.events, None, 0)
    orders = {}
    for e in log.events:
        if e.event_type == "OrderPlaced":
            orders[e.stream_id] = e
        elif e.event_type == "OrderCancelled":
            orders.pop(e.stream_id)
    since = NOW - timedelta(hours=1)
    live = [e for e in orders.values() if e.occurred_at > since]
    usd = sum(e.data["total_minor"] for e in live if e.data["currency"] == "USD")
    eur = sum(e.data["total_minor"] for e in live if e.data["currency"] == "EUR")
    n_usd = sum(1 for e in live if e.data["currency"] == "USD")

    rev = compute_metric(store, "tenant-m", "revenue", "1h", "USD", NOW)
    assert rev.value == pytest.approx(usd / 100) and rev.unit == "USD"
    assert rev.components["by_currency"] == {"EUR": pytest.approx(eur / 100), "USD": pytest.approx(usd / 100)}
    assert compute_metric(store, "tenant-m", "revenue", "1h", "EUR", NOW).value == pytest.approx(eur / 100)
    assert compute_metric(store, "tenant-m", "revenue", "1h", "JPY", NOW).value == 0.0
    cnt = compute_metric(store, "tenant-m", "order_count", "1h", "USD", NOW)
    assert cnt.value == len(live)
    aov = compute_metric(store, "tenant-m", "avg_order_value", "1h", "USD", NOW)
    assert aov.value == pytest.approx(usd / 100 / n_usd)

    sessions: dict[str, list[RecordedEvent]] = {}
    for e in log.events:
        if e.stream_type == "session":
            sessions.setdefault(e.stream_id, []).append(e)
    in_window = [s for s in sessions.values() if s[0].occurred_at > since]
    converted = [s for s in in_window if any(e.event_type == "CheckoutStarted" for e in s)]
    conv = compute_metric(store, "tenant-m", "conversion_rate", "1h", "USD", NOW)
    assert conv.value == pytest.approx(len(converted) / len(in_window))
    active = [s for s in sessions.values() if s[-1].occurred_at >= NOW - timedelta(seconds=300)]
    assert compute_metric(store, "tenant-m", "active_sessions", "now", "USD", NOW).value == len(active)

    recent = {e.metadata["command_id"] for e in log.events if e.recorded_at > NOW - timedelta(minutes=15)}
    err = compute_metric(store, "tenant-m", "error_rate", "15m", "USD", NOW, rejected_commands=3)
    assert err.components == {"rejected": 3, "accepted": len(recent)}
    assert err.value == pytest.approx(3 / (3 + len(recent)))
    assert compute_metric(store, "tenant-empty", "error_rate", "5m", "USD", NOW).value == 0.0
    assert compute_metric(store, "tenant-empty", "conversion_rate", "5m", "USD", NOW).value == 0.0

    with pytest.raises(UnknownMetric):
        compute_metric(store, "tenant-m", "nope", "1h", "USD", NOW)
    with pytest.raises(UnsupportedWindow):
        compute_metric(store, "tenant-m", "active_sessions", "1h", "USD", NOW)
    assert set(METRICS) >= {
        "revenue",
        "order_count",
        "avg_order_value",
        "conversion_rate",
        "active_sessions",
        "error_rate",
    }


def test_hostile_ids_are_data_not_sql(store: ClickHouseStore) -> None:
    log = Log("tenant-'x\"")
    evil = "U'); DROP TABLE users; --\n{x:String}"
    log.add("UserRegistered", evil, NOW, user_id=evil, name="O'Brien \\ é", email="e", region="r")
    ClickHouseSink(store, None).apply(log.events, None, 0)
    found = get_entity(store, "tenant-'x\"", "user", evil)
    assert found is not None and found.data["name"] == "O'Brien \\ é"
    assert fold_entity("user", evil, log.events) == found.data


def test_batch_write_latency(store: ClickHouseStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """1,000-event batches: one INSERT per table; report the measured cost (a benchmark figure,
    not asserted)."""
    log = shop("tenant-perf", n_orders=400, seed=3)
    sink = ClickHouseSink(store, None)
    inserts: list[str] = []
    real_insert = store.insert_rows

    def counting_insert(table: str, rows: Any) -> None:
        inserts.append(table)
        real_insert(table, rows)

    monkeypatch.setattr(store, "insert_rows", counting_insert)
    timings = []
    writes = []
    for i in range(0, len(log.events), 1000):
        inserts.clear()
        started = time.perf_counter()
        sink.apply(log.events[i : i + 1000], None, 0)
        timings.append(time.perf_counter() - started)
        writes.append(sink.last_write_seconds)
        assert inserts and len(inserts) == len(set(inserts)) and set(inserts) <= set(TABLES), inserts
    print(
        f"\n{len(log.events)} events; per 1000-event batch: total {[round(t * 1000) for t in timings]} ms, "
        f"inserts {[round(w * 1000) for w in writes]} ms, misses {sink.misses}"
    )
    assert len(timings) >= 2  # several full batches
    assert len(table_rows(store, "tenant-perf")["events"]) == len(log.events)


class _Checkpoints:
    def __init__(self) -> None:
        self.saved: list[tuple[Any, int]] = []

    def load(self, name: str) -> tuple[Any | None, int]:
        return (self.saved[-1] if self.saved else (None, 0))

    def save(self, name: str, cursor: Any, watermark: int) -> None:
        self.saved.append((cursor, watermark))


def test_tailing_sink_defers_all_but_metric_tables(store: ClickHouseStore) -> None:
    """With a cursor, apply() writes the tables metrics read; the others and the checkpoint follow
    on tick()/flush(); lookups see deferred rows even when the row cache has evicted them; the
    result equals a plain rebuild."""
    log = shop("tenant-defer", n_orders=30)
    checkpoints = _Checkpoints()
    sink = ClickHouseSink(store, checkpoints, cache_size=8, defer_s=3600, defer_max_rows=10_000)
    for i in range(0, len(log.events), 25):
        chunk = log.events[i : i + 25]
        sink.apply(chunk, ("cursor", chunk[-1].position), chunk[-1].position)
        sink.tick()  # not due yet
    assert not checkpoints.saved and sink.pending_rows() > 0
    rows = table_rows(store, "tenant-defer")
    assert rows["orders"] and rows["sessions"]  # what metrics read is there already
    assert not rows["events"] and not rows["products"] and not rows["order_lines"]
    sink.flush()
    assert checkpoints.saved == [(("cursor", log.events[-1].position), log.events[-1].position)]
    assert sink.pending_rows() == 0
    ref = store.on_database("defer_ref")
    ref.drop_all()
    ref.ensure_schema()
    ClickHouseSink(ref, None).apply(log.events, None, 0)
    assert canon(table_rows(store, "tenant-defer")) == canon(table_rows(ref, "tenant-defer"))
    ref.drop_all()


def test_deferred_rows_are_flushed_before_the_checkpoint_is_reloaded(store: ClickHouseStore) -> None:
    log = shop("tenant-defer2", n_orders=5)
    checkpoints = _Checkpoints()
    sink = ClickHouseSink(store, checkpoints, defer_s=3600)
    sink.apply(log.events, ("c", 1), log.events[-1].position)
    assert sink.load_checkpoint() == (("c", 1), log.events[-1].position)
    assert len(table_rows(store, "tenant-defer2")["events"]) == len(log.events)

"""The event->metric graph as a tested artifact, on the real chdb read model.

Valid event stories are appended one event at a time on top of a few background states; every prefix
is projected into its own tenant and every metric is evaluated on every prefix. For every metric and
every event type in ``EVENT_TYPES``: an event of a type its contract declares (``moved_by``) must move
the metric (value or components) for some state, and an event of an undeclared type must never move
it. The same observations prove the contract-driven cache never serves a value older than the
position just applied.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from chdb_store import chdb_store
from event_log import EventLog

from connectors.clickhouse import ClickHouseStore
from connectors.clickhouse_sink import ClickHouseSink
from domain.events import EVENT_TYPES, RecordedEvent
from domain.validation import event_problems
from readmodels.contract_registry import REGISTRY
from readmodels.metrics import METRICS, NOW, compute_metric
from readmodels.read_cache import ReadCache

EVAL_AT = datetime.now(UTC).replace(microsecond=0)
Story = Callable[[EventLog, str], None]


def _order(log: EventLog, tag: str, pid: str, qty: int = 2, price: int = 1500, channel: str = "web") -> str:
    oid = f"ORD-20240501-{tag}"
    log.add("StockReserved", pid, product_id=pid, order_id=oid, quantity=qty)
    lines = [{"product_id": pid, "quantity": qty, "unit_price_minor": price}]
    log.add(
        "OrderPlaced",
        oid,
        order_id=oid,
        user_id=f"USR-{tag}",
        currency="USD",
        channel=channel,
        lines=lines,
        total_minor=qty * price,
    )
    return oid


def _product(log: EventLog, tag: str, stock: int = 50) -> str:
    pid = f"PROD-{tag}"
    log.add(
        "ProductRegistered",
        pid,
        product_id=pid,
        name="P",
        category="kitchen",
        price_minor=1500,
        currency="USD",
    )
    log.add("StockReceived", pid, product_id=pid, quantity=stock)
    return pid


def story_lifecycle(log: EventLog, tag: str) -> None:
    """Register, order, pay, confirm, ship (the stock leaves), deliver, refund in full with the units
    back in stock; then a stock count."""
    pid = _product(log, tag)
    log.add("UserRegistered", f"USR-{tag}", user_id=f"USR-{tag}", name="U", email="u@x.io", region="EU")
    oid = _order(log, tag, pid)
    pay = f"PAY-{tag}"
    log.add(
        "PaymentInitiated",
        pay,
        payment_id=pay,
        order_id=oid,
        amount_minor=3000,
        currency="USD",
        method="card",
    )
    log.add("PaymentCompleted", pay, payment_id=pay, order_id=oid, amount_minor=3000, currency="USD")
    log.add("OrderPaymentCaptured", oid, order_id=oid, payment_id=pay, amount_minor=3000, currency="USD")
    log.add("OrderConfirmed", oid, order_id=oid)
    log.add("OrderShipped", oid, order_id=oid)
    log.add("StockShipped", pid, product_id=pid, order_id=oid, quantity=2, from_reserved=2)
    log.add("OrderDelivered", oid, order_id=oid)
    log.add(
        "OrderRefunded",
        oid,
        order_id=oid,
        amount_minor=3000,
        currency="USD",
        refunded_total_minor=3000,
        full=True,
        lines=[{"product_id": pid, "quantity": 2}],
        restock=True,
    )
    log.add("PaymentRefunded", pay, payment_id=pay, order_id=oid, amount_minor=3000, currency="USD")
    log.add("StockReturned", pid, product_id=pid, order_id=oid, quantity=2, restocked=True)
    log.add("StockAdjusted", pid, product_id=pid, delta=-3, reason="count")


def story_cancel(log: EventLog, tag: str) -> None:
    """Order then cancel (stock released); a price change; a rejected reservation."""
    pid = _product(log, tag, stock=5)
    oid = _order(log, tag, pid, qty=3)
    log.add("OrderCancelled", oid, order_id=oid, reason="changed mind")
    log.add("StockReleased", pid, product_id=pid, order_id=oid, quantity=3)
    log.add(
        "ProductPriceChanged", pid, product_id=pid, old_price_minor=1500, price_minor=1700, currency="USD"
    )
    log.add(
        "ReservationRejected", pid, product_id=pid, order_id=f"ORD-20240501-{tag}X", requested=9, available=5
    )


def story_payment_failure(log: EventLog, tag: str) -> None:
    pid = _product(log, tag)
    oid = _order(log, tag, pid, channel="app")
    pay = f"PAY-{tag}"
    log.add(
        "PaymentInitiated",
        pay,
        payment_id=pay,
        order_id=oid,
        amount_minor=3000,
        currency="USD",
        method="card",
    )
    log.add("PaymentFailed", pay, payment_id=pay, order_id=oid, reason="declined")


def story_sessions(log: EventLog, tag: str) -> None:
    """A session through the whole funnel; one that abandons its cart; one that only browses."""
    for sid, kinds in (
        (f"SES-{tag}A", ("PageViewed", "ElementClicked", "ItemAddedToCart", "CheckoutStarted")),
        (f"SES-{tag}B", ("ItemAddedToCart", "PageViewed", "ElementClicked")),
        (f"SES-{tag}C", ("PageViewed", "PageViewed")),
    ):
        for n, kind in enumerate(kinds):
            log.add(kind, sid, session_id=sid, user_id=None, page_url=f"/p/{n}", product_id=None)


def story_revive(log: EventLog, tag: str) -> None:
    """Sessions that went quiet 20 minutes ago, each woken by a different event type; a session that
    starts with a click."""
    quiet = EVAL_AT - timedelta(minutes=20)
    kinds = ("PageViewed", "ElementClicked", "ItemAddedToCart", "CheckoutStarted")
    for n in range(len(kinds)):
        sid = f"SES-{tag}Q{n}"
        log.add("PageViewed", sid, quiet, session_id=sid, user_id=None, page_url="/", product_id=None)
    for n, kind in enumerate(kinds):
        sid = f"SES-{tag}Q{n}"
        log.add(kind, sid, session_id=sid, user_id=None, page_url=f"/q/{n}", product_id=None)
    sid = f"SES-{tag}K"
    log.add("ElementClicked", sid, session_id=sid, user_id=None, page_url="/k", product_id=None)


STORIES: dict[str, Story] = {
    "revive": story_revive,
    "life": story_lifecycle,
    "cancel": story_cancel,
    "fail": story_payment_failure,
    "sess": story_sessions,
}


def background(log: EventLog, kind: str) -> None:
    """'empty', or 'busy': a refunded order, a shipped one, a failed payment, a converted and an
    abandoned session (so ratios have denominators and percentiles have samples)."""
    if kind == "busy":
        story_lifecycle(log, "BG1")
        pid = _product(log, "BG2")
        oid = _order(log, "BG2", pid, qty=1)
        log.add("OrderShipped", oid, order_id=oid)
        story_payment_failure(log, "BG3")
        story_sessions(log, "BG4")


@dataclasses.dataclass
class Transition:
    scenario: str
    event: RecordedEvent
    before: dict[str, Any]  # metric -> fingerprint
    after: dict[str, Any]


def _fingerprint(store: ClickHouseStore, tenant: str, metric: str) -> Any:
    m = METRICS[metric]
    window = NOW if NOW in m.windows else "5m"
    r = compute_metric(store, tenant, metric, window, "USD", EVAL_AT, rejected_commands=1)
    return (round(r.value, 9), repr(sorted(r.components.items())))


def _retenant(events: list[RecordedEvent], tenant: str) -> list[RecordedEvent]:
    return [dataclasses.replace(e, tenant_id=tenant) for e in events]


@pytest.fixture(scope="module")
def transitions() -> Iterator[list[Transition]]:
    store = chdb_store("metric_graph")
    store.drop_all()
    store.ensure_schema()
    states: dict[str, list[RecordedEvent]] = {}
    scenarios: list[tuple[str, list[str]]] = []  # scenario -> its state tenants in order
    for bg in ("empty", "busy"):
        for name, story in STORIES.items():
            log = EventLog("x", start=EVAL_AT - timedelta(seconds=240))
            background(log, bg)
            first = len(log.events)
            story(log, name.upper()[:3])
            tenants = []
            for i in range(first, len(log.events) + 1):
                tenant = f"g-{bg}-{name}-{i}"
                states[tenant] = _retenant(log.events[:i], tenant)
                tenants.append(tenant)
            scenarios.append((f"{bg}/{name}", tenants))
    every = [e for events in states.values() for e in events]
    for e in every:
        assert not event_problems(e.event_type, e.stream_type, e.stream_id, e.schema_version, e.data), e
        assert e.occurred_at <= EVAL_AT
    ClickHouseSink(store, None).apply(every, None, 0)
    prints = {t: {m: _fingerprint(store, t, m) for m in METRICS} for t in states}
    out = []
    for scenario, tenants in scenarios:
        for before, after in zip(tenants, tenants[1:], strict=False):
            out.append(Transition(scenario, states[after][-1], prints[before], prints[after]))
    yield out
    store.drop_all()


def graph_violations(moved_by: dict[str, set[str]], transitions: list[Transition]) -> list[str]:
    """Where the declared graph and the observed one disagree (empty: the contracts tell the truth)."""
    problems = []
    for metric, declared in sorted(moved_by.items()):
        for event_type in EVENT_TYPES:
            seen = [t for t in transitions if t.event.event_type == event_type]
            moved = [t for t in seen if t.before[metric] != t.after[metric]]
            if event_type in declared and not moved:
                problems.append(
                    f"{metric}: declares {event_type}, which moved it in none of {len(seen)} states"
                )
            if event_type not in declared and moved:
                where = ", ".join(sorted({t.scenario for t in moved}))
                problems.append(f"{metric}: {event_type} moved it ({where}) but is not declared")
    return problems


def _declared() -> dict[str, set[str]]:
    return {name: set(REGISTRY.current(name).moved_by) for name in METRICS}


def test_every_event_type_is_exercised(transitions: list[Transition]) -> None:
    assert {t.event.event_type for t in transitions} == set(EVENT_TYPES)
    assert set(_declared()) == set(METRICS) and len(METRICS) >= 14


def test_contracts_declare_exactly_the_events_that_move_each_metric(transitions: list[Transition]) -> None:
    problems = graph_violations(_declared(), transitions)
    assert problems == [], "\n".join(problems)


def test_a_contract_that_lies_fails(transitions: list[Transition]) -> None:
    lying = _declared()
    lying["revenue"] = (lying["revenue"] - {"OrderCancelled"}) | {"PageViewed"}
    lying["stock_on_hand"] = lying["stock_on_hand"] - {"StockReserved"}
    problems = graph_violations(lying, transitions)
    assert any(p.startswith("revenue: OrderCancelled moved it") for p in problems), problems
    assert any(p.startswith("revenue: declares PageViewed") for p in problems), problems
    assert any(p.startswith("stock_on_hand: StockReserved moved it") for p in problems), problems
    assert len(problems) == 3


def _stale_reads(moved_by: dict[str, set[str]], transitions: list[Transition]) -> list[str]:
    """Cache the value before each event, apply the event to a contract-driven ReadCache, read again:
    a hit must equal the value after the event (a client that asked for its position sees it)."""
    stale = []
    for t in transitions:
        cache = ReadCache(moved_by, metric_ttl_s=60, clock=lambda: 0.0)  # time stands still: no expiry
        event = dataclasses.replace(t.event, tenant_id="L")
        for metric in METRICS:
            cache.put_metric(("L", metric, "w", "USD"), t.before[metric], cache.generation())
        cache.invalidate([dataclasses.replace(event, tenant_id="other")])  # another tenant: no effect
        cache.invalidate([event])
        for metric in METRICS:
            hit = cache.get_metric(("L", metric, "w", "USD"))
            if hit is not None and hit != t.after[metric]:
                stale.append(f"{metric} after {t.event.event_type} ({t.scenario})")
    return stale


def test_contract_driven_cache_never_serves_a_value_older_than_the_applied_position(
    transitions: list[Transition],
) -> None:
    assert _stale_reads(_declared(), transitions) == []
    lying = _declared()
    lying["net_revenue"] = lying["net_revenue"] - {"OrderRefunded"}
    assert any(s.startswith("net_revenue after OrderRefunded") for s in _stale_reads(lying, transitions))

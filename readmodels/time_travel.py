"""Time travel from the event store: metric values and order timelines as they were at an instant.

A metric ``as_of`` T is the value the live read model would have served at T for the window ending
at T: the tenant's events with ``occurred_at <= T`` (event time; in position order, invalid ones
skipped like every pipeline does) are folded through the same pure projection (``projections.rows``)
into rows, the rows are loaded into a throwaway database on the SAME ClickHouse engine (chdb allows one
data path per process), and the metric's one definition (``readmodels.metrics.compute_metric``) is
evaluated there with ``now = T``. A cancellation or refund after T therefore does not change the value.

Work is bounded: only the streams of the metric's table that have an event in the window (every
windowed metric's time column is the time of an event of the row's own stream, so rows outside that
set cannot fall in the window), only the tenant, and at most ``max_events`` events
(``TimeTravelTooLarge`` beyond). Nothing is cached: the scratch database is dropped after each read.

``order_timeline`` lists every event of an order stream with its position and time, and the time
spent between the lifecycle stages it reached (placed -> confirmed -> paid -> shipped -> delivered,
or cancelled / refunded).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from domain.events import RecordedEvent
from domain.session import ACTIVE_WINDOW_SECONDS
from projections.rows import (
    EVENTS,
    ORDER_LINES,
    ORDERS,
    PAYMENTS,
    PRODUCTS,
    SESSIONS,
    STOCK_MOVEMENTS,
    USERS,
    MemoryLookup,
    Row,
    invalid_reason,
    project,
)
from readmodels.metrics import (
    NOW,
    WINDOWS,
    MetricResult,
    UnsupportedDimension,
    UnsupportedGrain,
    compute_metric,
    compute_series,
    metric_def,
)
from readmodels.ports import EventHistory, ReadModelStore

log = logging.getLogger(__name__)

DEFAULT_MAX_EVENTS = 100_000  # AGENTFLOW_TIME_TRAVEL_MAX_EVENTS

# read-model table -> the stream type whose events build its rows
_STREAM_OF = {
    ORDERS: "order",
    ORDER_LINES: "order",
    PAYMENTS: "payment",
    PRODUCTS: "product",
    USERS: "user",
    SESSIONS: "session",
    STOCK_MOVEMENTS: "product",
}


class TimeTravelTooLarge(ValueError):
    """The historical evaluation needs more events than the bound allows."""

    def __init__(self, max_events: int, metric: str, window: str) -> None:
        super().__init__(
            f"as_of for {metric} over {window} needs more than {max_events} events; ask for a shorter window"
        )
        self.max_events = max_events
        self.metric = metric
        self.window = window


# ---- reading the event store ------------------------------------------------------------------


def _window_start(name: str, window: str, as_of: datetime) -> datetime | None:
    """Earliest event time a row in the window can carry; None: a snapshot over all history."""
    if name == "active_sessions":
        return as_of - timedelta(seconds=ACTIVE_WINDOW_SECONDS)
    if window == NOW:
        return None
    return as_of - WINDOWS[window]


class _Budget:
    def __init__(self, limit: int, metric: str, window: str) -> None:
        self.left = limit
        self.limit = limit
        self.metric = metric
        self.window = window

    def take(self, events: list[RecordedEvent]) -> list[RecordedEvent]:
        if len(events) > self.left:
            raise TimeTravelTooLarge(self.limit, self.metric, self.window)
        self.left -= len(events)
        return events


def events_for_table(
    history: EventHistory,
    tenant_id: str,
    table: str,
    since: datetime | None,
    until: datetime,
    budget: _Budget,
) -> list[RecordedEvent]:
    """The tenant's events (occurred_at <= until, position order) that build every row of ``table``
    whose window column can fall in [since, until]: all events of the streams with an event in that
    range (or of every stream of the table's type when ``since`` is None). Order lines also get the
    registrations of their products (their category). The events table gets the events recorded in
    (since, until]."""
    if table == EVENTS:
        return budget.take(history.recorded_between(tenant_id, since, until, budget.left + 1))
    events = budget.take(history.streams_touched(tenant_id, _STREAM_OF[table], since, until, budget.left + 1))
    if table == ORDER_LINES:
        products = sorted(
            {
                str(line["product_id"])
                for e in events
                if e.event_type == "OrderPlaced"
                for line in e.data.get("lines") or ()
            }
        )
        if products:
            registered = budget.take(history.registrations(tenant_id, products, until, budget.left + 1))
            events = sorted([*events, *registered], key=lambda e: e.position)
    return events


def fold_rows(events: Sequence[RecordedEvent], table: str) -> list[Row]:
    """Rows of ``table`` after projecting ``events`` (any order; folded by position, invalid skipped)."""
    mem = MemoryLookup()
    for e in sorted(events, key=lambda ev: ev.position):
        if invalid_reason(e) is None:
            mem.apply(project(e, mem))
    return list(mem.tables[table].values())


# ---- metrics ----------------------------------------------------------------------------------


def historical_metric(
    events: EventHistory,
    live: ReadModelStore,
    tenant_id: str,
    name: str,
    window: str,
    currency: str,
    as_of: datetime,
    rejected_commands: int = 0,
    filters: dict[str, str] | None = None,
    max_events: int = DEFAULT_MAX_EVENTS,
) -> MetricResult:
    """The metric over the window ending at ``as_of``, from the events that had occurred by then.

    Raises like ``compute_metric`` (UnknownMetric / UnsupportedWindow / UnsupportedDimension) and
    TimeTravelTooLarge. ``rejected_commands`` (error_rate) is the caller's count for the window."""
    m = metric_def(name, window)
    for dim in filters or {}:
        if dim not in m.dimensions:
            raise UnsupportedDimension(f"{name} offers dimensions {', '.join(m.dimensions) or 'none'}")
    table = m.tables[0]
    budget = _Budget(max_events, name, window)
    found = events_for_table(events, tenant_id, table, _window_start(name, window, as_of), as_of, budget)
    rows = fold_rows(found, table)
    with live.scratch([table]) as scratch:
        scratch.insert_rows(table, rows)
        return compute_metric(
            scratch,
            tenant_id,
            name,
            window,
            currency,
            as_of,
            rejected_commands=rejected_commands,
            filters=filters,
        )


def historical_series(
    events: EventHistory,
    live: ReadModelStore,
    tenant_id: str,
    name: str,
    window: str,
    grain: str,
    currency: str,
    as_of: datetime,
    filters: dict[str, str] | None = None,
    max_events: int = DEFAULT_MAX_EVENTS,
) -> tuple[str, list[dict[str, Any]]]:
    """``compute_series`` over the window ending at ``as_of``, from the events that had occurred by then
    (raises like ``compute_series`` and TimeTravelTooLarge)."""
    m = metric_def(name, window)
    if grain not in m.grains:
        raise UnsupportedGrain(f"{name} offers grains {', '.join(m.grains) or 'none'}")
    table = m.tables[0]
    budget = _Budget(max_events, name, window)
    found = events_for_table(events, tenant_id, table, _window_start(name, window, as_of), as_of, budget)
    rows = fold_rows(found, table)
    with live.scratch([table]) as scratch:
        scratch.insert_rows(table, rows)
        return compute_series(scratch, tenant_id, name, window, grain, currency, as_of, filters)


# ---- order timeline ---------------------------------------------------------------------------

STAGE_OF = {
    "OrderPlaced": "placed",
    "OrderConfirmed": "confirmed",
    "OrderPaymentCaptured": "paid",
    "OrderShipped": "shipped",
    "OrderDelivered": "delivered",
    "OrderCancelled": "cancelled",
    "OrderRefunded": "refunded",
}


def _seconds(a: datetime, b: datetime) -> float:
    return round((b - a).total_seconds(), 6)


def order_timeline(
    store: EventHistory, tenant_id: str, order_id: str, as_of: datetime | None = None
) -> dict[str, Any] | None:
    """Every event of the order's stream (position order; up to ``as_of`` when given), or None.

    ``stages`` are the lifecycle stages reached, each at its first event, in the order reached;
    ``stage_durations`` the time between consecutive ones (placed -> confirmed -> paid -> shipped ->
    delivered for a fulfilled order). Invalid events (dead-lettered, never projected) are listed
    with ``projected: false`` and count for no stage."""
    if as_of is None:
        events = store.load_stream(tenant_id, "order", order_id)
    else:
        events = store.read_stream_until(tenant_id, "order", order_id, as_of)
    if not events:
        return None
    events = sorted(events, key=lambda e: e.position)
    placed_at: datetime | None = None
    stages: list[dict[str, Any]] = []
    reached: set[str] = set()
    items: list[dict[str, Any]] = []
    previous: datetime | None = None
    for e in events:
        reason = invalid_reason(e)
        stage = STAGE_OF.get(e.event_type) if reason is None else None
        if stage == "placed" and placed_at is None:
            placed_at = e.occurred_at
        item: dict[str, Any] = {
            "position": e.position,
            "stream_version": e.stream_version,
            "event_id": str(e.event_id),
            "event_type": e.event_type,
            "stage": stage,
            "occurred_at": e.occurred_at,
            "recorded_at": e.recorded_at,
            "seconds_since_previous": _seconds(previous, e.occurred_at) if previous is not None else None,
            "seconds_since_placed": _seconds(placed_at, e.occurred_at) if placed_at is not None else None,
            "data": e.data,
            "correlation_id": e.metadata.get("correlation_id"),
            "command_id": e.metadata.get("command_id"),
            "projected": reason is None,
        }
        if reason is not None:
            item["invalid_reason"] = reason
        items.append(item)
        previous = e.occurred_at
        if stage is not None and stage not in reached:
            reached.add(stage)
            stages.append({"stage": stage, "at": e.occurred_at, "position": e.position})
    durations = [
        {"from": a["stage"], "to": b["stage"], "seconds": _seconds(a["at"], b["at"])}
        for a, b in zip(stages, stages[1:], strict=False)
    ]
    return {
        "entity_type": "order",
        "entity_id": order_id,
        "events": items,
        "event_count": len(items),
        "stages": stages,
        "stage_durations": durations,
        "total_seconds": _seconds(stages[0]["at"], stages[-1]["at"]) if stages else 0.0,
        "current_stage": stages[-1]["stage"] if stages else None,
        "first_position": events[0].position,
        "last_position": events[-1].position,
    }

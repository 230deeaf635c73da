"""Baseline metrics computed from the ClickHouse read models (bound parameters only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from domain.events import EVENT_TYPES
from domain.money import to_major
from domain.session import ACTIVE_WINDOW_SECONDS
from readmodels.clickhouse import ClickHouseStore, ms

WINDOWS: dict[str, timedelta] = {
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
}
NOW = "now"
ORDER_EVENTS = ("OrderPlaced", "OrderCancelled")
SESSION_EVENTS = ("PageViewed", "ElementClicked", "ItemAddedToCart", "CheckoutStarted")


@dataclass(frozen=True, slots=True)
class MetricDef:
    name: str
    unit: str
    description: str
    windows: tuple[str, ...]
    source_events: tuple[str, ...]
    source_table: str
    money: bool = False
    contract_version: str = "1.0.0"


@dataclass(frozen=True, slots=True)
class MetricResult:
    value: float
    unit: str
    components: dict[str, Any] = field(default_factory=dict)


class UnknownMetric(KeyError):
    pass


class UnsupportedWindow(ValueError):
    pass


_W = tuple(WINDOWS)
METRICS: dict[str, MetricDef] = {
    m.name: m
    for m in (
        MetricDef(
            "revenue",
            "currency",
            "Total of non-cancelled orders placed in the window (one currency)",
            _W,
            ORDER_EVENTS,
            "orders",
            money=True,
        ),
        MetricDef(
            "order_count",
            "orders",
            "Non-cancelled orders placed in the window (all currencies)",
            _W,
            ORDER_EVENTS,
            "orders",
        ),
        MetricDef(
            "avg_order_value",
            "currency",
            "Revenue / orders in the window, in one currency",
            _W,
            ORDER_EVENTS,
            "orders",
            money=True,
        ),
        MetricDef(
            "conversion_rate",
            "ratio",
            "Sessions started in the window that reached checkout / all",
            _W,
            SESSION_EVENTS,
            "sessions",
        ),
        MetricDef(
            "active_sessions",
            "sessions",
            f"Sessions with an event in the last {ACTIVE_WINDOW_SECONDS} seconds",
            (NOW,),
            SESSION_EVENTS,
            "sessions",
        ),
        MetricDef(
            "error_rate",
            "ratio",
            "Rejected commands / all commands in the window",
            _W,
            tuple(EVENT_TYPES),
            "events",
        ),
    )
}


def _range(now: datetime, window: str) -> dict[str, int]:
    return {"since": ms(now - WINDOWS[window]), "until": ms(now)}


_IN_WINDOW = (
    "{col} > fromUnixTimestamp64Milli({{since:Int64}}, 'UTC') "
    "AND {col} <= fromUnixTimestamp64Milli({{until:Int64}}, 'UTC')"
)


def _orders_by_currency(
    store: ClickHouseStore, tenant_id: str, window: str, now: datetime
) -> dict[str, tuple[int, int]]:
    rows = store.query(
        "SELECT currency, count() AS n, sum(total_minor) AS total FROM {db}.orders FINAL "
        "WHERE tenant_id = {t:String} AND cancelled_at IS NULL AND "
        + _IN_WINDOW.format(col="placed_at")
        + " GROUP BY currency ORDER BY currency",
        {"t": tenant_id, **_range(now, window)},
    )
    return {r["currency"]: (int(r["n"]), int(r["total"])) for r in rows}


def _major(minor: int, currency: str) -> float:
    try:
        return to_major(minor, currency)
    except ValueError:  # unknown currency in legacy data: assume 2 decimals rather than fail
        return minor / 100


def _revenue(
    store: ClickHouseStore, tenant_id: str, window: str, currency: str, now: datetime
) -> MetricResult:
    by = _orders_by_currency(store, tenant_id, window, now)
    n, total = by.get(currency, (0, 0))
    return MetricResult(
        _major(total, currency),
        currency,
        {
            "currency": currency,
            "order_count": n,
            "by_currency": {c: _major(t, c) for c, (_, t) in by.items()},
        },
    )


def _order_count(
    store: ClickHouseStore, tenant_id: str, window: str, currency: str, now: datetime
) -> MetricResult:
    by = _orders_by_currency(store, tenant_id, window, now)
    return MetricResult(
        float(sum(n for n, _ in by.values())), "orders", {"by_currency": {c: n for c, (n, _) in by.items()}}
    )


def _avg_order_value(
    store: ClickHouseStore, tenant_id: str, window: str, currency: str, now: datetime
) -> MetricResult:
    by = _orders_by_currency(store, tenant_id, window, now)
    n, total = by.get(currency, (0, 0))
    return MetricResult(
        _major(total, currency) / n if n else 0.0,
        currency,
        {
            "currency": currency,
            "order_count": n,
            "revenue": _major(total, currency),
            "by_currency": {c: _major(t, c) / k for c, (k, t) in by.items() if k},
        },
    )


def _conversion_rate(
    store: ClickHouseStore, tenant_id: str, window: str, currency: str, now: datetime
) -> MetricResult:
    rows = store.query(
        "SELECT count() AS n, countIf(is_conversion = 1) AS c FROM {db}.sessions FINAL "
        "WHERE tenant_id = {t:String} AND " + _IN_WINDOW.format(col="started_at"),
        {"t": tenant_id, **_range(now, window)},
    )
    n, c = int(rows[0]["n"]), int(rows[0]["c"])
    return MetricResult(c / n if n else 0.0, "ratio", {"sessions": n, "converted": c})


def _active_sessions(
    store: ClickHouseStore, tenant_id: str, window: str, currency: str, now: datetime
) -> MetricResult:
    rows = store.query(
        "SELECT count() AS n FROM {db}.sessions FINAL WHERE tenant_id = {t:String} "
        "AND last_event_at >= fromUnixTimestamp64Milli({since:Int64}, 'UTC') "
        "AND last_event_at <= fromUnixTimestamp64Milli({until:Int64}, 'UTC')",
        {"t": tenant_id, "since": ms(now - timedelta(seconds=ACTIVE_WINDOW_SECONDS)), "until": ms(now)},
    )
    return MetricResult(float(rows[0]["n"]), "sessions", {"active_window_seconds": ACTIVE_WINDOW_SECONDS})


def accepted_commands(store: ClickHouseStore, tenant_id: str, window: str, now: datetime) -> int:
    rows = store.query(
        "SELECT uniqExactIf(command_id, command_id != '') AS n FROM {db}.events "
        "WHERE tenant_id = {t:String} AND " + _IN_WINDOW.format(col="recorded_at"),
        {"t": tenant_id, **_range(now, window)},
    )
    return int(rows[0]["n"])


def _error_rate(
    store: ClickHouseStore, tenant_id: str, window: str, currency: str, now: datetime, rejected: int
) -> MetricResult:
    accepted = accepted_commands(store, tenant_id, window, now)
    total = accepted + rejected
    value = rejected / total if total else 0.0
    return MetricResult(value, "ratio", {"rejected": rejected, "accepted": accepted})


def compute_metric(
    store: ClickHouseStore,
    tenant_id: str,
    name: str,
    window: str,
    currency: str,
    now: datetime,
    rejected_commands: int = 0,
) -> MetricResult:
    """Raises UnknownMetric / UnsupportedWindow; money metrics never mix currencies."""
    m = METRICS.get(name)
    if m is None:
        raise UnknownMetric(name)
    if window not in m.windows:
        raise UnsupportedWindow(f"{name} offers windows {', '.join(m.windows)}")
    if name == "revenue":
        return _revenue(store, tenant_id, window, currency, now)
    if name == "order_count":
        return _order_count(store, tenant_id, window, currency, now)
    if name == "avg_order_value":
        return _avg_order_value(store, tenant_id, window, currency, now)
    if name == "conversion_rate":
        return _conversion_rate(store, tenant_id, window, currency, now)
    if name == "active_sessions":
        return _active_sessions(store, tenant_id, window, currency, now)
    return _error_rate(store, tenant_id, window, currency, now, rejected_commands)

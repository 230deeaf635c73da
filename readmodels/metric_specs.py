"""How each windowed metric is computed: one aggregate query over one read-model table plus a pure
``finish`` that turns the aggregates (per currency when ``by_currency``) into value and components.

The same spec serves a window (one row per currency) and a series (one row per bucket and currency).
SQL here is code-supplied; tenant, time range and dimension values are bound parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from domain.money import to_major

Aggregates = dict[str, dict[str, float]]  # currency ('' when not grouped) -> alias -> value
Finish = Callable[[Aggregates, str], tuple[float, dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    table: str
    time_col: str | None  # the event-time column the window filters; None: a snapshot metric
    aggregates: tuple[tuple[str, str], ...]  # (alias, SQL aggregate)
    finish: Finish
    where: str = ""
    by_currency: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def major(minor: float, currency: str) -> float:
    try:
        return to_major(int(minor), currency)
    except ValueError:  # unknown currency in legacy data: assume 2 decimals rather than fail
        return minor / 100


def _sum(groups: Aggregates, alias: str) -> int:
    return int(sum(g.get(alias, 0) for g in groups.values()))


def _ratio(num: str, den: str, num_name: str, den_name: str) -> Finish:
    def finish(groups: Aggregates, currency: str) -> tuple[float, dict[str, Any]]:
        n, d = _sum(groups, num), _sum(groups, den)
        return (n / d if d else 0.0), {num_name: n, den_name: d}

    return finish


def _revenue(groups: Aggregates, currency: str) -> tuple[float, dict[str, Any]]:
    g = groups.get(currency, {})
    return major(g.get("total", 0), currency), {
        "currency": currency,
        "order_count": int(g.get("n", 0)),
        "by_currency": {c: major(v["total"], c) for c, v in sorted(groups.items())},
    }


def _order_count(groups: Aggregates, currency: str) -> tuple[float, dict[str, Any]]:
    return float(_sum(groups, "n")), {"by_currency": {c: int(v["n"]) for c, v in sorted(groups.items())}}


def _avg_order_value(groups: Aggregates, currency: str) -> tuple[float, dict[str, Any]]:
    g = groups.get(currency, {})
    n, revenue = int(g.get("n", 0)), major(g.get("total", 0), currency)
    return (revenue / n if n else 0.0), {
        "currency": currency,
        "order_count": n,
        "revenue": revenue,
        "by_currency": {c: major(v["total"], c) / v["n"] for c, v in sorted(groups.items()) if v["n"]},
    }


def _net_revenue(groups: Aggregates, currency: str) -> tuple[float, dict[str, Any]]:
    g = groups.get(currency, {})
    gross, refunded = g.get("total", 0), g.get("refunded", 0)
    return major(gross - refunded, currency), {
        "currency": currency,
        "gross": major(gross, currency),
        "refunded": major(refunded, currency),
        "by_currency": {c: major(v["total"] - v["refunded"], c) for c, v in sorted(groups.items())},
    }


def _gmv(groups: Aggregates, currency: str) -> tuple[float, dict[str, Any]]:
    g = groups.get(currency, {})
    return major(g.get("gmv", 0), currency), {
        "currency": currency,
        "lines": int(g.get("lines", 0)),
        "by_currency": {c: major(v["gmv"], c) for c, v in sorted(groups.items())},
    }


def _units(groups: Aggregates, currency: str) -> tuple[float, dict[str, Any]]:
    return float(_sum(groups, "units")), {"lines": _sum(groups, "lines")}


def _returned(groups: Aggregates, currency: str) -> tuple[float, dict[str, Any]]:
    units, restocked = _sum(groups, "units"), _sum(groups, "restocked")
    return float(units), {"returns": _sum(groups, "returns"), "restocked": restocked,
                          "not_restocked": units - restocked}


def _stock(groups: Aggregates, currency: str) -> tuple[float, dict[str, Any]]:
    on_hand, reserved = _sum(groups, "on_hand"), _sum(groups, "reserved")
    return float(on_hand - reserved), {"on_hand": on_hand, "reserved": reserved}


def _p95(groups: Aggregates, currency: str) -> tuple[float, dict[str, Any]]:
    g = groups.get("", {})
    n = int(g.get("n", 0))
    if not n:
        return 0.0, {"shipped_orders": 0, "p50_seconds": 0.0}
    return round(g["p95"] / 1000, 3), {"shipped_orders": n, "p50_seconds": round(g["p50"] / 1000, 3)}


_ORDERS_LIVE = "cancelled_at IS NULL"
_ORDER_TOTALS = (("n", "count()"), ("total", "sum(total_minor)"))
_LEAD_MS = "dateDiff('millisecond', placed_at, assumeNotNull(shipped_at))"

SPECS: dict[str, MetricSpec] = {
    "revenue": MetricSpec("orders", "placed_at", _ORDER_TOTALS, _revenue, _ORDERS_LIVE, True),
    "order_count": MetricSpec("orders", "placed_at", _ORDER_TOTALS, _order_count, _ORDERS_LIVE, True),
    "avg_order_value": MetricSpec("orders", "placed_at", _ORDER_TOTALS, _avg_order_value, _ORDERS_LIVE, True),
    "conversion_rate": MetricSpec(
        "sessions",
        "started_at",
        (("converted", "countIf(is_conversion = 1)"), ("sessions", "count()")),
        _ratio("converted", "sessions", "converted", "sessions"),
    ),
    "payment_failure_rate": MetricSpec(
        "payments",
        "initiated_at",
        (("failed", "countIf(status = 'failed')"), ("settled", "countIf(status != 'initiated')")),
        _ratio("failed", "settled", "failed", "settled"),
    ),
    "refund_rate": MetricSpec(
        "orders",
        "placed_at",
        (("refunded", "countIf(refunded_minor > 0)"), ("paid", "countIf(paid_minor > 0)")),
        _ratio("refunded", "paid", "refunded_orders", "paid_orders"),
    ),
    "net_revenue": MetricSpec(
        "orders",
        "placed_at",
        (("total", "sum(total_minor)"), ("refunded", "sum(refunded_minor)")),
        _net_revenue,
        _ORDERS_LIVE,
        True,
    ),
    "units_sold": MetricSpec(
        "order_lines",
        "placed_at",
        (("units", "sum(quantity)"), ("lines", "count()")),
        _units,
        "cancelled = 0",
    ),
    "units_returned": MetricSpec(
        "stock_movements",
        "moved_at",
        (
            ("units", "sumIf(units, kind = 'returned')"),
            ("restocked", "sumIf(on_hand_delta, kind = 'returned')"),
            ("returns", "countIf(kind = 'returned')"),
        ),
        _returned,
    ),
    "return_rate": MetricSpec(
        "stock_movements",
        "moved_at",
        (("returned", "sumIf(units, kind = 'returned')"), ("shipped", "sumIf(units, kind = 'shipped')")),
        _ratio("returned", "shipped", "units_returned", "units_shipped"),
    ),
    "stock_on_hand": MetricSpec(
        "products", None, (("on_hand", "sum(on_hand)"), ("reserved", "sum(reserved)")), _stock
    ),
    "cart_abandonment_rate": MetricSpec(
        "sessions",
        "started_at",
        (
            ("abandoned", "countIf(funnel_stage = 'cart')"),
            ("carts", "countIf(funnel_stage IN ('cart', 'checkout'))"),
        ),
        _ratio("abandoned", "carts", "abandoned", "carts"),
    ),
    "fulfilment_time_p95": MetricSpec(
        "orders",
        "shipped_at",
        (
            ("n", "count()"),
            ("p95", f"quantileExactInclusive(0.95)({_LEAD_MS})"),
            ("p50", f"quantileExactInclusive(0.5)({_LEAD_MS})"),
        ),
        _p95,
        "shipped_at IS NOT NULL",
    ),
    "gross_merchandise_value": MetricSpec(
        "order_lines",
        "placed_at",
        (("gmv", "sum(quantity * unit_price_minor)"), ("lines", "count()")),
        _gmv,
        by_currency=True,
    ),
}

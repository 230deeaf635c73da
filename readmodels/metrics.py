"""Metrics over the ClickHouse read models: definitions from the contracts, bound parameters only.

``METRICS`` (name -> MetricDef) is derived from the current contract versions (readmodels/contracts);
the computations are ``metric_specs.SPECS`` plus two bespoke ones (active_sessions: a sliding
activity window; error_rate: also counts rejected commands, which are not events).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.session import ACTIVE_WINDOW_SECONDS
from readmodels.contract_registry import DIMENSION_COLUMNS, REGISTRY
from readmodels.metric_specs import SPECS, Aggregates, MetricSpec
from readmodels.ports import ReadModelStore
from readmodels.schema import ms
from readmodels.windows import GRAINS, NOW, WINDOWS

__all__ = ["GRAINS", "METRICS", "NOW", "WINDOWS", "MetricDef", "MetricResult", "compute_metric"]

MAX_SERIES_POINTS = 10_080  # 7 days of 1-minute buckets


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
    tables: tuple[str, ...] = ()
    dimensions: tuple[str, ...] = ()
    grains: tuple[str, ...] = ()
    freshness_budget_seconds: float = 5.0


@dataclass(frozen=True, slots=True)
class MetricResult:
    value: float
    unit: str
    components: dict[str, Any] = field(default_factory=dict)


class UnknownMetric(KeyError):
    pass


class UnsupportedWindow(ValueError):
    pass


class UnsupportedDimension(ValueError):
    pass


class UnsupportedGrain(ValueError):
    pass


def _metric_defs() -> dict[str, MetricDef]:
    out = {}
    for name, c in REGISTRY.currents("metric").items():
        out[name] = MetricDef(
            name=name,
            unit=c.doc["unit"],
            description=c.doc["description"],
            windows=tuple(c.doc["windows"]),
            source_events=c.moved_by,
            source_table=c.tables[0],
            money=bool(c.get("money", False)),
            contract_version=c.version,
            tables=c.tables,
            dimensions=tuple(c.doc["dimensions"]),
            grains=tuple(c.get("grains") or ()),
            freshness_budget_seconds=float(c.doc["freshness_budget_seconds"]),
        )
    return out


METRICS: dict[str, MetricDef] = _metric_defs()
_BESPOKE = ("active_sessions", "error_rate")
_missing = set(METRICS) - set(SPECS) - set(_BESPOKE)
if _missing:  # a contract without a computation is a packaging error, not a runtime 500
    raise RuntimeError(f"metric contracts without a computation: {sorted(_missing)}")

_IN_WINDOW = (
    "{col} > fromUnixTimestamp64Milli({{since:Int64}}, 'UTC') "
    "AND {col} <= fromUnixTimestamp64Milli({{until:Int64}}, 'UTC')"
)


def _filters_sql(m: MetricDef, filters: dict[str, str]) -> tuple[str, dict[str, Any]]:
    sql, params = "", {}
    for dim, value in sorted(filters.items()):
        if dim not in m.dimensions:
            raise UnsupportedDimension(f"{m.name} offers dimensions {', '.join(m.dimensions) or 'none'}")
        sql += f" AND {DIMENSION_COLUMNS[dim]} = {{d_{dim}:String}}"
        params[f"d_{dim}"] = value
    return sql, params


def _aggregate(
    store: ReadModelStore,
    spec: MetricSpec,
    tenant_id: str,
    since: datetime | None,
    until: datetime,
    filter_sql: str,
    params: dict[str, Any],
    bucket_seconds: int | None = None,
) -> dict[int, Aggregates]:
    """bucket start (epoch s; 0 without buckets) -> currency -> alias -> value."""
    keys = []
    if bucket_seconds is not None:
        assert spec.time_col is not None
        keys.append(
            f"toUnixTimestamp(toStartOfInterval(assumeNotNull({spec.time_col}), "
            f"INTERVAL {int(bucket_seconds)} SECOND)) AS bucket"
        )
    if spec.by_currency:
        keys.append("currency")
    aggs = ", ".join(f"{expr} AS {alias}" for alias, expr in spec.aggregates)
    sql = f"SELECT {', '.join([*keys, aggs])} FROM {{db}}.{spec.table} FINAL WHERE tenant_id = {{t:String}}"
    if spec.where:
        sql += f" AND ({spec.where})"
    bound: dict[str, Any] = {"t": tenant_id, **params}
    if spec.time_col is not None and since is not None:
        sql += " AND " + _IN_WINDOW.format(col=spec.time_col)
        bound.update(since=ms(since), until=ms(until))
    sql += filter_sql
    group = [k.split(" AS ")[-1] for k in keys]
    if group:
        sql += f" GROUP BY {', '.join(group)}"
    out: dict[int, Aggregates] = {}
    for row in store.query(sql, bound):
        values = {a: float(row[a] or 0) for a, _ in spec.aggregates}
        out.setdefault(int(row.get("bucket", 0)), {})[str(row.get("currency", ""))] = values
    return out


def _active_sessions(store: ReadModelStore, tenant_id: str, now: datetime) -> MetricResult:
    rows = store.query(
        "SELECT count() AS n FROM {db}.sessions FINAL WHERE tenant_id = {t:String} "
        "AND last_event_at >= fromUnixTimestamp64Milli({since:Int64}, 'UTC') "
        "AND last_event_at <= fromUnixTimestamp64Milli({until:Int64}, 'UTC')",
        {"t": tenant_id, "since": ms(now - timedelta(seconds=ACTIVE_WINDOW_SECONDS)), "until": ms(now)},
    )
    return MetricResult(float(rows[0]["n"]), "sessions", {"active_window_seconds": ACTIVE_WINDOW_SECONDS})


def accepted_commands(store: ReadModelStore, tenant_id: str, window: str, now: datetime) -> int:
    rows = store.query(
        "SELECT uniqExactIf(command_id, command_id != '') AS n FROM {db}.events "
        "WHERE tenant_id = {t:String} AND " + _IN_WINDOW.format(col="recorded_at"),
        {"t": tenant_id, "since": ms(now - WINDOWS[window]), "until": ms(now)},
    )
    return int(rows[0]["n"])


def _error_rate(
    store: ReadModelStore, tenant_id: str, window: str, now: datetime, rejected: int
) -> MetricResult:
    accepted = accepted_commands(store, tenant_id, window, now)
    total = accepted + rejected
    return MetricResult(
        rejected / total if total else 0.0, "ratio", {"rejected": rejected, "accepted": accepted}
    )


def _unit(m: MetricDef, currency: str) -> str:
    return currency if m.money else m.unit


def metric_def(name: str, window: str) -> MetricDef:
    m = METRICS.get(name)
    if m is None:
        raise UnknownMetric(name)
    if window not in m.windows:
        raise UnsupportedWindow(f"{name} offers windows {', '.join(m.windows)}")
    return m


def compute_metric(
    store: ReadModelStore,
    tenant_id: str,
    name: str,
    window: str,
    currency: str,
    now: datetime,
    rejected_commands: int = 0,
    filters: dict[str, str] | None = None,
) -> MetricResult:
    """Raises UnknownMetric / UnsupportedWindow / UnsupportedDimension; money never mixes currencies.

    ``filters`` are dimension -> value; a money metric's currency is ``currency``, not a filter."""
    m = metric_def(name, window)
    filter_sql, params = _filters_sql(m, filters or {})
    if name == "active_sessions":
        return _active_sessions(store, tenant_id, now)
    if name == "error_rate":
        return _error_rate(store, tenant_id, window, now, rejected_commands)
    spec = SPECS[name]
    since = None if window == NOW else now - WINDOWS[window]
    groups = _aggregate(store, spec, tenant_id, since, now, filter_sql, params).get(0, {})
    value, components = spec.finish(groups, currency)
    return MetricResult(value, _unit(m, currency), components)


def compute_series(
    store: ReadModelStore,
    tenant_id: str,
    name: str,
    window: str,
    grain: str,
    currency: str,
    now: datetime,
    filters: dict[str, str] | None = None,
) -> tuple[str, list[dict[str, Any]]]:
    """(unit, points): one point per ``grain`` bucket [start, end) covering the window ending at ``now``;
    empty buckets carry the metric's empty value. Raises like ``compute_metric`` and UnsupportedGrain."""
    m = metric_def(name, window)
    if grain not in m.grains:
        raise UnsupportedGrain(f"{name} offers grains {', '.join(m.grains) or 'none'}")
    step = int(GRAINS[grain].total_seconds())
    span = WINDOWS[window]
    if span < GRAINS[grain] or span / GRAINS[grain] > MAX_SERIES_POINTS:
        raise UnsupportedGrain(f"grain {grain} does not fit window {window}")
    filter_sql, params = _filters_sql(m, filters or {})
    spec = SPECS[name]
    since = now - span
    buckets = _aggregate(store, spec, tenant_id, since, now, filter_sql, params, step)
    first = int(since.timestamp()) // step * step
    points = []
    for start in range(first, int(now.timestamp()) + 1, step):
        value, components = spec.finish(buckets.get(start, {}), currency)
        points.append(
            {
                "start": datetime.fromtimestamp(start, UTC),
                "end": datetime.fromtimestamp(start + step, UTC),
                "value": value,
                "components": components,
            }
        )
    return _unit(m, currency), points

"""Semantic queries: metrics x dimensions x filters over a window (optionally per grain), compiled to
SQL from the metric contracts.

A metric's contract (readmodels/contracts, via ``readmodels.metrics.METRICS``) gives its table,
dimensions, windows and grains; its computation (``metric_specs.SPECS``) gives the aggregates, the
event-time column, the row filter and the ``finish`` that turns aggregates into the value. One SQL
query per metric groups those aggregates by bucket and dimensions; money metrics never sum across
currencies (a row's value is in its ``currency`` dimension, or in the reported currency). The
tenant and every filter value are bound parameters; names in the SQL come from the contracts only.

Everything the semantic layer reads about the metrics goes through ``catalog()`` (one adapter over
the contract-derived definitions).
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from domain.money import CURRENCY_EXPONENTS
from readmodels.contract_registry import DIMENSION_COLUMNS
from readmodels.metric_specs import SPECS, Aggregates, MetricSpec
from readmodels.metrics import MAX_SERIES_POINTS, METRICS, MetricDef
from readmodels.windows import GRAINS, NOW, WINDOWS

BUCKET = "bucket_start"
MAX_METRICS = 10


class SemanticError(ValueError):
    """A query that does not map onto the catalog (400, with suggestions in ``details``)."""

    def __init__(self, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


@dataclass(frozen=True, slots=True)
class MetricInfo:
    name: str
    unit: str
    money: bool
    windows: tuple[str, ...]
    grains: tuple[str, ...]
    dimensions: tuple[str, ...]
    table: str
    description: str
    spec: MetricSpec | None  # None: computed by the metric endpoint's bespoke code (no SQL here)


def catalog() -> dict[str, MetricInfo]:
    """The adapter onto the contracts: metric name -> what the semantic layer needs."""

    def info(m: MetricDef) -> MetricInfo:
        return MetricInfo(
            m.name,
            m.unit,
            m.money,
            m.windows,
            m.grains,
            m.dimensions,
            m.source_table,
            m.description,
            SPECS.get(m.name),
        )

    return {name: info(m) for name, m in METRICS.items()}


def dimensions() -> tuple[str, ...]:
    return tuple(DIMENSION_COLUMNS)


@dataclass(frozen=True, slots=True)
class SemanticQuery:
    metrics: tuple[str, ...]
    dimensions: tuple[str, ...] = ()
    filters: tuple[tuple[str, str], ...] = ()
    window: str = "1h"
    grain: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "metrics": list(self.metrics),
            "dimensions": list(self.dimensions),
            "filters": dict(self.filters),
            "window": self.window,
            "grain": self.grain,
        }


def suggest(word: str, choices: Any, n: int = 3) -> list[str]:
    return difflib.get_close_matches(str(word).lower(), sorted(choices), n=n, cutoff=0.5)


def _str_list(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SemanticError("invalid_query", f"{key} must be a list of names")
    return value


def validate(body: dict[str, Any]) -> SemanticQuery:
    """A semantic query from a request body (raises SemanticError with suggestions)."""
    cat = catalog()
    names = _str_list(body, "metrics")
    if not names:
        raise SemanticError(
            "invalid_query", "metrics must name at least one metric", {"metrics": sorted(cat)}
        )
    if len(names) > MAX_METRICS or len(set(names)) != len(names):
        raise SemanticError("invalid_query", f"metrics must be at most {MAX_METRICS} distinct names")
    for name in names:
        if name not in cat:
            raise SemanticError(
                "unknown_metric",
                f"unknown metric {name!r}",
                {"suggestions": suggest(name, cat), "metrics": sorted(cat)},
            )
    dims = _str_list(body, "dimensions")
    if len(set(dims)) != len(dims):
        raise SemanticError("invalid_query", "dimensions has duplicates")
    raw_filters = body.get("filters") or {}
    if not isinstance(raw_filters, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in raw_filters.items()
    ):
        raise SemanticError("invalid_query", "filters must map dimension names to non-empty strings")
    for dim in [*dims, *raw_filters]:
        if dim not in DIMENSION_COLUMNS:
            raise SemanticError(
                "unknown_dimension",
                f"unknown dimension {dim!r}",
                {"suggestions": suggest(dim, DIMENSION_COLUMNS), "dimensions": sorted(DIMENSION_COLUMNS)},
            )
    filters = {k: (v.upper() if k == "currency" else v) for k, v in raw_filters.items()}
    for name in names:
        m = cat[name]
        bad = [d for d in dims if d not in m.dimensions]
        bad += [d for d in filters if d not in m.dimensions and d != "currency"]
        if bad:
            raise SemanticError(
                "unsupported_dimension",
                f"metric {name} offers dimensions {', '.join(m.dimensions) or 'none'}, not {', '.join(bad)}",
                {"metric": name, "dimensions": list(m.dimensions)},
            )
        if m.spec is None and (dims or filters.keys() - {"currency"}):
            raise SemanticError(
                "unsupported_dimension",
                f"metric {name} has no dimensions",
                {"metric": name, "dimensions": []},
            )
    common = [w for w in (*WINDOWS, NOW) if all(w in cat[n].windows for n in names)]
    window = body.get("window")
    if window is None:
        window = "1h" if "1h" in common else (common[0] if common else None)
    if window not in common:
        raise SemanticError(
            "unsupported_window",
            f"window {window!r} is not offered by {', '.join(names)}"
            if window is not None
            else f"{', '.join(names)} share no window",
            {"windows": common, "suggestions": suggest(str(window), common)},
        )
    grain = body.get("grain")
    if grain is not None:
        fits = [
            g
            for g in GRAINS
            if all(g in cat[n].grains for n in names)
            and window in WINDOWS
            and GRAINS[g] <= WINDOWS[window] <= GRAINS[g] * MAX_SERIES_POINTS
        ]
        if grain not in fits:
            raise SemanticError(
                "unsupported_grain",
                f"grain {grain!r} is not offered by {', '.join(names)} over {window}",
                {"grains": fits, "suggestions": suggest(str(grain), fits)},
            )
    return SemanticQuery(tuple(names), tuple(dims), tuple(sorted(filters.items())), window, grain)


# ---- compilation ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CompiledMetric:
    metric: str
    sql: str | None  # None: a bespoke metric (its value comes from the metric endpoint's code)
    params: dict[str, Any] = field(default_factory=dict)  # without the tenant and the time range
    tables: tuple[str, ...] = ()
    currency_key: bool = False  # the SQL groups by currency as well (money never mixes)


_IN_WINDOW = (
    "{col} > fromUnixTimestamp64Milli({{since:Int64}}, 'UTC') "
    "AND {col} <= fromUnixTimestamp64Milli({{until:Int64}}, 'UTC')"
)


def compile_metric(q: SemanticQuery, name: str, database: str = "{db}") -> CompiledMetric:
    m = catalog()[name]
    spec = m.spec
    if spec is None:
        return CompiledMetric(name, None, tables=(m.table,))
    keys: list[str] = []
    if q.grain is not None and spec.time_col is not None:
        step = int(GRAINS[q.grain].total_seconds())
        keys.append(
            f"toUnixTimestamp(toStartOfInterval(assumeNotNull({spec.time_col}), "
            f"INTERVAL {step} SECOND)) AS {BUCKET}"
        )
    for dim in q.dimensions:
        keys.append(f"{DIMENSION_COLUMNS[dim]} AS {dim}")
    currency_key = spec.by_currency and "currency" not in q.dimensions
    if currency_key:
        keys.append("currency AS __currency")
    aggs = ", ".join(f"{expr} AS {alias}" for alias, expr in spec.aggregates)
    sql = (
        f"SELECT {', '.join([*keys, aggs])} FROM {database}.{spec.table} FINAL "
        "WHERE tenant_id = {tenant:String}"
    )
    if spec.where:
        sql += f" AND ({spec.where})"
    if spec.time_col is not None and q.window != NOW:
        sql += " AND " + _IN_WINDOW.format(col=spec.time_col)
    params: dict[str, Any] = {}
    for dim, value in q.filters:
        if dim == "currency" and "currency" not in m.dimensions:
            continue  # a metric without a currency dimension ignores currency (as GET /v1/metrics)
        if dim == "currency" and m.money and "currency" not in q.dimensions:
            continue  # the reported currency: picked from the per-currency groups by finish()
        sql += f" AND {DIMENSION_COLUMNS[dim]} = {{f_{dim}:String}}"
        params[f"f_{dim}"] = value
    group = [k.split(" AS ")[-1] for k in keys]
    if group:
        sql += f" GROUP BY {', '.join(group)} ORDER BY {', '.join(group)}"
    return CompiledMetric(name, sql, params, (spec.table,), currency_key)


def compile_query(q: SemanticQuery, database: str = "{db}") -> list[CompiledMetric]:
    return [compile_metric(q, name, database) for name in q.metrics]


@dataclass(frozen=True, slots=True)
class Result:
    columns: list[str]
    rows: list[dict[str, Any]]
    units: dict[str, str]
    currency: str | None  # the reported currency of money metrics without a currency dimension
    sql: list[str]
    tables: list[str]


def execute(
    query: Callable[[str, dict[str, Any]], list[dict[str, Any]]],
    q: SemanticQuery,
    tenant: str,
    now: datetime,
    reporting_currency: str,
    bespoke: Callable[[str, str], float] | None = None,
) -> Result:
    """Run ``q`` for ``tenant``: one row per (bucket, dimension values), one column per metric.

    ``query(sql, params)`` runs code-built SQL (``{db}`` placeholder); ``bespoke(metric, window)``
    gives the value of a metric without SQL here (active_sessions, error_rate)."""
    cat = catalog()
    filters = dict(q.filters)
    currency = filters.get("currency", reporting_currency).upper()
    if currency not in CURRENCY_EXPONENTS:
        raise SemanticError(
            "unknown_currency",
            f"unknown currency {currency!r}",
            {"suggestions": suggest(currency, CURRENCY_EXPONENTS)},
        )
    until = now.astimezone(UTC)
    since = until - WINDOWS[q.window] if q.window in WINDOWS else None
    per_metric: dict[str, dict[tuple[Any, ...], Aggregates]] = {}
    compiled = compile_query(q)
    bespoke_values: dict[str, float] = {}
    for c in compiled:
        m = cat[c.metric]
        if c.sql is None:
            if bespoke is None:
                raise SemanticError("unsupported_metric", f"metric {c.metric} is not available here")
            bespoke_values[c.metric] = bespoke(c.metric, q.window)
            continue
        params: dict[str, Any] = {"tenant": tenant, **c.params}
        if since is not None and m.spec is not None and m.spec.time_col is not None:
            params.update(since=int(since.timestamp() * 1000), until=int(until.timestamp() * 1000))
        groups: dict[tuple[Any, ...], Aggregates] = {}
        assert m.spec is not None
        for found in query(c.sql, params):
            key = tuple(
                ([int(found[BUCKET])] if BUCKET in found else []) + [str(found[d]) for d in q.dimensions]
            )
            cur = (
                str(found.get("__currency", ""))
                if c.currency_key
                else (str(found["currency"]) if m.spec.by_currency else "")
            )
            groups.setdefault(key, {})[cur] = {a: float(found[a] or 0) for a, _ in m.spec.aggregates}
        per_metric[c.metric] = groups
    # the row keys: every bucket of the window (series), times every observed dimension combination
    combos = sorted({k[1:] if q.grain else k for g in per_metric.values() for k in g}) or (
        [()] if not q.dimensions else []
    )
    keys: list[tuple[Any, ...]] = list(combos)
    if q.grain is not None and since is not None:
        step = int(GRAINS[q.grain].total_seconds())
        first = int(since.timestamp()) // step * step
        buckets = list(range(first, int(until.timestamp()) + 1, step))
        keys = [(b, *combo) for b, combo in itertools.product(buckets, combos)]
    columns = ([BUCKET] if q.grain else []) + list(q.dimensions) + list(q.metrics)
    rows: list[dict[str, Any]] = []
    for key in keys:
        row: dict[str, Any] = {}
        offset = 0
        if q.grain:
            row[BUCKET] = datetime.fromtimestamp(int(key[0]), UTC).isoformat().replace("+00:00", "Z")
            offset = 1
        for i, dim in enumerate(q.dimensions):
            row[dim] = key[offset + i]
        row_currency = row.get("currency", currency)
        for name in q.metrics:
            if name in bespoke_values:
                row[name] = bespoke_values[name]
                continue
            spec = cat[name].spec
            assert spec is not None
            aggs = per_metric[name].get(tuple(key), {})
            row[name] = spec.finish(aggs, str(row_currency))[0]
        rows.append(row)
    units = {
        n: (currency if cat[n].money and "currency" not in q.dimensions else cat[n].unit) for n in q.metrics
    }
    money = any(cat[n].money for n in q.metrics) and "currency" not in q.dimensions
    return Result(
        columns,
        rows,
        units,
        currency if money else None,
        [c.sql for c in compiled if c.sql],
        sorted({t for c in compiled for t in c.tables}),
    )

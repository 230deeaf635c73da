"""Semantic queries: metrics x dimensions x filters over a window (optionally per grain), compiled to
SQL from the metric contracts.

A metric's contract (readmodels/contracts, via ``readmodels.metrics.METRICS``) gives its table,
dimensions, windows and grains; its computation (``metric_specs.SPECS``) gives the aggregates, the
event-time column, the row filter and the ``finish`` that turns aggregates into the value. One SQL
query per metric groups those aggregates by bucket and dimensions; money metrics never sum across
currencies (a row's value is in its ``currency`` dimension, or in the reported currency). The
tenant and every filter value are bound parameters; names in the SQL come from the contracts only.

Additive options (a body without them means what it always meant):

* ``order_by`` (one of the metrics) and ``direction`` (``desc``, the default, or ``asc``) rank the rows
  by that metric's value (ties keep the row order: buckets, then dimension values), and ``top`` keeps
  the first N rows (``limit`` stays the page size of POST /v1/query);
* ``compare`` (a window length, e.g. ``24h``) evaluates the same window that much earlier as well:
  each metric gets ``<metric>_compared`` and ``<metric>_change`` (value minus compared value) columns;
* ``as_of`` (an ISO-8601 instant) ends the window at that instant instead of now. Evaluated by
  ``execute`` on the store it is given; ``folded`` builds the store as the read model stood at that
  instant (the tenant's events up to it, folded like readmodels.time_travel), so a later cancellation
  or refund does not change the answer.

Everything the semantic layer reads about the metrics goes through ``catalog()`` (one adapter over
the contract-derived definitions).
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.money import CURRENCY_EXPONENTS
from readmodels.contract_registry import DIMENSION_COLUMNS
from readmodels.metric_specs import SPECS, Aggregates, MetricSpec
from readmodels.metrics import MAX_SERIES_POINTS, METRICS, MetricDef
from readmodels.ports import EventHistory, ReadModelStore
from readmodels.time_travel import DEFAULT_MAX_EVENTS, TimeTravelTooLarge, events_for_table, fold_rows
from readmodels.time_travel import _Budget as Budget
from readmodels.windows import GRAINS, NOW, WINDOWS

BUCKET = "bucket_start"
MAX_METRICS = 10
MAX_TOP = 10_000
DIRECTIONS = ("desc", "asc")
COMPARED, CHANGE = "_compared", "_change"  # column suffixes of a comparison


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
    order_by: str | None = None
    direction: str | None = None  # "desc" | "asc" when order_by is set
    top: int | None = None  # the first N rows (after order_by)
    compare: str | None = None  # a window length: the same window that much earlier
    as_of: str | None = None  # ISO-8601 UTC instant ("...Z") the window ends at; None: now
    notes: tuple[str, ...] = ()  # how a question was read, when it says more than the fields

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "metrics": list(self.metrics),
            "dimensions": list(self.dimensions),
            "filters": dict(self.filters),
            "window": self.window,
            "grain": self.grain,
        }
        for key in ("order_by", "direction", "top", "compare", "as_of"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.notes:
            out["notes"] = list(self.notes)
        return out

    def instant(self, now: datetime) -> datetime:
        """The end of the window: ``as_of``, or ``now``."""
        return parse_instant(self.as_of) if self.as_of else now.astimezone(UTC)


def parse_instant(raw: str) -> datetime:
    value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


def format_instant(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


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
    order_by, direction, top = _ranking(body, names)
    compare, as_of = _compare(body, names, window, grain), _as_of(body, names)
    return SemanticQuery(
        tuple(names),
        tuple(dims),
        tuple(sorted(filters.items())),
        window,
        grain,
        order_by,
        direction,
        top,
        compare,
        as_of,
    )


def _ranking(body: dict[str, Any], names: list[str]) -> tuple[str | None, str | None, int | None]:
    order_by, direction, top = body.get("order_by"), body.get("direction"), body.get("top")
    if order_by is not None and order_by not in names:
        raise SemanticError(
            "invalid_query",
            "order_by must be one of the query's metrics",
            {"metrics": names, "suggestions": suggest(str(order_by), names)},
        )
    if direction is not None and (order_by is None or direction not in DIRECTIONS):
        raise SemanticError("invalid_query", "direction is desc or asc, and needs order_by")
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= MAX_TOP):
        raise SemanticError("invalid_query", f"top must be an integer from 1 to {MAX_TOP}")
    return order_by, (direction or "desc") if order_by else None, top


def _compare(body: dict[str, Any], names: list[str], window: str, grain: str | None) -> str | None:
    compare = body.get("compare")
    if compare is None:
        return None
    if compare not in WINDOWS:
        raise SemanticError(
            "invalid_query",
            "compare is a window length: the same window that much earlier",
            {"compare": list(WINDOWS), "suggestions": suggest(str(compare), WINDOWS)},
        )
    if window == NOW or grain is not None:
        raise SemanticError("invalid_query", "compare needs a window (not now) and no grain")
    _history_needed(names, "compare")
    return str(compare)


def _as_of(body: dict[str, Any], names: list[str]) -> str | None:
    raw = body.get("as_of")
    if raw is None:
        return None
    try:
        instant = parse_instant(str(raw))
    except ValueError:
        raise SemanticError("invalid_as_of", "as_of must be an ISO-8601 timestamp") from None
    _history_needed(names, "as_of")
    return format_instant(instant)


def _history_needed(names: list[str], what: str) -> None:
    cat = catalog()
    bespoke = [n for n in names if cat[n].spec is None]
    if bespoke:
        raise SemanticError(
            "invalid_query",
            f"{what} is not offered for {', '.join(bespoke)} (computed by GET /v1/metrics only)",
            {"metrics": bespoke},
        )


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


Query = Callable[[str, dict[str, Any]], list[dict[str, Any]]]
Groups = dict[str, dict[tuple[Any, ...], Aggregates]]  # metric -> row key -> currency -> aggregates


def _groups(
    query: Query,
    q: SemanticQuery,
    compiled: list[CompiledMetric],
    tenant: str,
    until: datetime,
    bespoke: Callable[[str, str], float] | None,
) -> tuple[Groups, dict[str, float]]:
    """The aggregates of every SQL metric per row key, and the values of the bespoke ones, over the
    window ending at ``until``."""
    cat = catalog()
    since = until - WINDOWS[q.window] if q.window in WINDOWS else None
    per_metric: Groups = {}
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
    return per_metric, bespoke_values


def _values(
    q: SemanticQuery, per_metric: Groups, bespoke: dict[str, float], key: tuple[Any, ...], currency: str
) -> dict[str, float]:
    """Each metric's value in one row (``currency``: the row's, or the reported one)."""
    cat = catalog()
    out: dict[str, float] = {}
    for name in q.metrics:
        if name in bespoke:
            out[name] = bespoke[name]
            continue
        spec = cat[name].spec
        assert spec is not None
        out[name] = spec.finish(per_metric[name].get(tuple(key), {}), currency)[0]
    return out


def execute(
    query: Query,
    q: SemanticQuery,
    tenant: str,
    now: datetime,
    reporting_currency: str,
    bespoke: Callable[[str, str], float] | None = None,
) -> Result:
    """Run ``q`` for ``tenant``: one row per (bucket, dimension values), one column per metric (and its
    ``_compared`` and ``_change`` columns with ``compare``), ranked and cut by ``order_by``/``top``.

    ``query(sql, params)`` runs code-built SQL (``{db}`` placeholder); ``bespoke(metric, window)``
    gives the value of a metric without SQL here (active_sessions, error_rate). The window ends at
    ``q.as_of`` (which must not be after ``now``; ``query`` should then read ``folded``) or ``now``."""
    cat = catalog()
    filters = dict(q.filters)
    currency = filters.get("currency", reporting_currency).upper()
    if currency not in CURRENCY_EXPONENTS:
        raise SemanticError(
            "unknown_currency",
            f"unknown currency {currency!r}",
            {"suggestions": suggest(currency, CURRENCY_EXPONENTS)},
        )
    until = q.instant(now)
    if until > now.astimezone(UTC):
        raise SemanticError("as_of_in_future", "as_of must not be in the future")
    since = until - WINDOWS[q.window] if q.window in WINDOWS else None
    compiled = compile_query(q)
    per_metric, bespoke_values = _groups(query, q, compiled, tenant, until, bespoke)
    earlier: Groups = {}
    if q.compare is not None:
        earlier, _ = _groups(query, q, compiled, tenant, until - WINDOWS[q.compare], bespoke)
    # the row keys: every bucket of the window (series), times every observed dimension combination
    combos = sorted(
        {k[1:] if q.grain else k for per in (per_metric, earlier) for g in per.values() for k in g}
    ) or ([()] if not q.dimensions else [])
    keys: list[tuple[Any, ...]] = list(combos)
    if q.grain is not None and since is not None:
        step = int(GRAINS[q.grain].total_seconds())
        first = int(since.timestamp()) // step * step
        buckets = list(range(first, int(until.timestamp()) + 1, step))
        keys = [(b, *combo) for b, combo in itertools.product(buckets, combos)]
    value_columns: list[str] = []
    for name in q.metrics:
        value_columns += [name] if q.compare is None else [name, name + COMPARED, name + CHANGE]
    columns = ([BUCKET] if q.grain else []) + list(q.dimensions) + value_columns
    rows: list[dict[str, Any]] = []
    for key in keys:
        row: dict[str, Any] = {}
        offset = 0
        if q.grain:
            row[BUCKET] = format_instant(datetime.fromtimestamp(int(key[0]), UTC))
            offset = 1
        for i, dim in enumerate(q.dimensions):
            row[dim] = key[offset + i]
        row_currency = str(row.get("currency", currency))
        values = _values(q, per_metric, bespoke_values, key, row_currency)
        before = _values(q, earlier, bespoke_values, key, row_currency) if q.compare is not None else {}
        for name in q.metrics:
            row[name] = values[name]
            if q.compare is not None:
                row[name + COMPARED] = before[name]
                row[name + CHANGE] = values[name] - before[name]
        rows.append(row)
    if q.order_by is not None:  # a stable sort: ties keep the bucket / dimension order
        rows.sort(key=lambda r: r[str(q.order_by)], reverse=q.direction != "asc")
    if q.top is not None:
        rows = rows[: q.top]
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


@contextmanager
def folded(
    history: EventHistory,
    live: ReadModelStore,
    q: SemanticQuery,
    tenant: str,
    now: datetime,
    max_events: int = DEFAULT_MAX_EVENTS,
) -> Iterator[ReadModelStore]:
    """A throwaway store holding the tables of ``q``'s metrics as they stood at ``q.as_of``: the
    tenant's events that had occurred by then, of every stream with an event in the (compared) window,
    folded through the projections (readmodels.time_travel). Raises SemanticError when the fold needs
    more than ``max_events`` events."""
    cat = catalog()
    at = q.instant(now)
    since: datetime | None = None
    if q.window in WINDOWS:
        since = at - WINDOWS[q.window] - (WINDOWS[q.compare] if q.compare else timedelta(0))
    tables = sorted({cat[m].table for m in q.metrics})
    budget = Budget(max_events, ", ".join(q.metrics), q.window)
    try:
        with live.scratch(tables) as scratch:
            for table in tables:
                events = events_for_table(history, tenant, table, since, at, budget)
                scratch.insert_rows(table, fold_rows(events, table))
            yield scratch
    except TimeTravelTooLarge as exc:
        raise SemanticError("time_travel_too_large", str(exc), {"max_events": exc.max_events}) from None

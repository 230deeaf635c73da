"""The metric as served: one service for ``GET /v1/metrics/{name}``, its series, batch items, semantic
queries and the alert evaluator.

``MetricQueries.resolve`` checks a request against the metric's contract (unknown metric -> ReadNotFound;
window, dimension -> InvalidRead) and fixes its currency (default: the tenant's reporting currency);
``compute`` is the value now (over the serving read models, after catching up the tables the serving
sink writes lazily) or as of an instant (folded from the event store, readmodels/time_travel);
``value`` serves the current value through the read cache (single flight, refresh-ahead) and a
historical one straight from ``compute``; ``read`` is a whole read (resolve, wait for ``min_position``,
value, ``meta``); ``measure`` is the bare number at an instant for alert rules (no cache).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from anyio import to_thread

from readmodels.contract_registry import DIMENSION_COLUMNS
from readmodels.errors import InvalidRead, ReadNotFound
from readmodels.freshness import Freshness, ReadAfter, iso, parse_as_of
from readmodels.metrics import (
    GRAINS,
    MAX_SERIES_POINTS,
    METRICS,
    WINDOWS,
    MetricDef,
    MetricResult,
    compute_metric,
    compute_series,
)
from readmodels.ports import EventHistory, ReadModelStore, RejectionLog
from readmodels.read_cache import ReadCache, metric_value
from readmodels.schema import METRIC_TABLES
from readmodels.time_travel import TimeTravelTooLarge, historical_metric, historical_series

# metrics that count rejected commands (not events): a rejection drops their cached values
REJECTION_METRICS = ("error_rate",)

# the dimension filters a metric read may pass (query parameters of the same names)
DIMENSIONS = tuple(DIMENSION_COLUMNS)


@dataclass(slots=True)  # not frozen: one is made per read, and frozen dataclasses are slower to make
class MetricQuery:
    """A checked metric request: the metric, one of its windows, the currency, dimension filters."""

    spec: MetricDef
    window: str
    currency: str
    filters: dict[str, str]

    @property
    def name(self) -> str:
        return self.spec.name


def _unknown(name: str) -> ReadNotFound:
    return ReadNotFound("unknown_metric", f"unknown metric {name!r}", {"available": sorted(METRICS)})


def _too_large(exc: TimeTravelTooLarge) -> InvalidRead:
    return InvalidRead("time_travel_too_large", str(exc), {"max_events": exc.max_events})


def _default_grain(window: str, grains: tuple[str, ...]) -> str:
    """The finest offered grain giving at most 500 points."""
    for grain in sorted(grains, key=lambda g: GRAINS[g]):
        if WINDOWS[window] / GRAINS[grain] <= 500:
            return grain
    return max(grains, key=lambda g: GRAINS[g])


class MetricQueries:
    def __init__(
        self,
        store: ReadModelStore,
        history: EventHistory,
        rejections: RejectionLog,
        cache: ReadCache,
        freshness: Freshness,
        reporting_currency: str,
        time_travel_max_events: int,
    ) -> None:
        self.store = store
        self.history = history
        self.rejections = rejections
        self.cache = cache
        self.freshness = freshness
        self.reporting_currency = reporting_currency.upper()
        self.time_travel_max_events = time_travel_max_events

    # ---- checking a request ----------------------------------------------------------------
    def spec(self, name: str) -> MetricDef:
        spec = METRICS.get(name)
        if spec is None:
            raise _unknown(name)
        return spec

    def resolve(
        self,
        name: str,
        window: str | None = None,
        currency: str | None = None,
        dimensions: Mapping[str, str | None] | None = None,
    ) -> MetricQuery:
        """``window`` defaults to the metric's first; ``dimensions`` maps a dimension to its requested
        value (None: not asked)."""
        spec = self.spec(name)
        window = window or spec.windows[0]
        if window not in spec.windows:
            raise InvalidRead(
                "invalid_window",
                f"metric {name} offers windows {', '.join(spec.windows)}, not {window!r}",
                {"available_windows": list(spec.windows)},
            )
        return MetricQuery(spec, window, self.currency(currency), self.filters(spec, dimensions or {}))

    def currency(self, currency: str | None) -> str:
        return (currency or self.reporting_currency).upper()

    @staticmethod
    def filters(spec: MetricDef, dimensions: Mapping[str, str | None]) -> dict[str, str]:
        """Dimension filters (InvalidRead for a dimension the metric does not offer). A money metric's
        ``currency`` selects the reported currency, and a metric without a currency dimension ignores
        ``currency`` (existing clients send it to every metric)."""
        filters: dict[str, str] = {}
        for dim in DIMENSIONS:
            value = dimensions.get(dim)
            if value is None or (dim == "currency" and (spec.money or dim not in spec.dimensions)):
                continue
            if dim not in spec.dimensions:
                offered = ", ".join(spec.dimensions) or "none"
                raise InvalidRead(
                    "invalid_dimension",
                    f"metric {spec.name} offers dimensions {offered}, not {dim!r}",
                    {"dimensions": list(spec.dimensions)},
                )
            filters[dim] = value.upper() if dim == "currency" else value
        return filters

    # ---- the value -------------------------------------------------------------------------
    def _result(self, tenant: str, q: MetricQuery, now: datetime, historical: bool) -> MetricResult:
        rejected = 0
        if not historical and not set(q.spec.tables) <= METRIC_TABLES:
            self.freshness.catch_up()  # a table the serving sink writes lazily
        if q.name in REJECTION_METRICS:
            rejected = self.rejections.count_rejections(tenant, since=now - WINDOWS[q.window], until=now)
        if not historical:
            return compute_metric(
                self.store, tenant, q.name, q.window, q.currency, now, rejected_commands=rejected,
                filters=q.filters,
            )  # fmt: skip
        try:  # time travel: the window ending at ``now``, over the events up to ``now``
            return historical_metric(
                self.history, self.store, tenant, q.name, q.window, q.currency, now, rejected, q.filters,
                max_events=self.time_travel_max_events,
            )  # fmt: skip
        except TimeTravelTooLarge as exc:
            raise _too_large(exc) from exc

    def compute(self, tenant: str, q: MetricQuery, as_of: datetime | None = None) -> dict[str, Any]:
        """The metric body (no ``meta``): now, or as it stood at ``as_of``. Blocking: call off the loop."""
        result = self._result(tenant, q, as_of or datetime.now(UTC), historical=as_of is not None)
        return {
            "metric_name": q.name,
            "value": result.value,
            "unit": result.unit,
            "window": q.window,
            "computed_at": iso(datetime.now(UTC)),
            "components": result.components,
        }

    async def value(self, tenant: str, q: MetricQuery, as_of: datetime | None = None) -> dict[str, Any]:
        """``compute`` through the read cache (now) or directly (as of an instant); a fresh dict."""
        if as_of is not None:
            return await to_thread.run_sync(self.compute, tenant, q, as_of)
        variant = q.currency if not q.filters else f"{q.currency}|{sorted(q.filters.items())}"
        cached = await metric_value(
            self.cache, (tenant, q.name, q.window, variant), lambda: self.compute(tenant, q)
        )
        return dict(cached)

    async def read(
        self,
        tenant: str,
        name: str,
        window: str | None = None,
        currency: str | None = None,
        dimensions: Mapping[str, str | None] | None = None,
        as_of: str | None = None,
        after: ReadAfter | None = None,
    ) -> dict[str, Any]:
        """``GET /v1/metrics/{name}``: the body with ``meta``."""
        q = self.resolve(name, window, currency, dimensions)
        at = parse_as_of(as_of)
        fresh = await self.freshness.wait(after)
        body = await self.value(tenant, q, at)
        body["meta"] = self.freshness.meta(at, fresh)
        return body

    def measure(
        self,
        tenant_id: str,
        metric: str,
        window: str,
        currency: str | None,
        filters: dict[str, str],
        now: datetime,
    ) -> float:
        """The value at ``now`` over the serving read models, uncached (alert rules; semantic queries'
        bespoke metrics). Raises UnknownMetric / UnsupportedWindow / UnsupportedDimension like
        ``compute_metric``."""
        spec = METRICS.get(metric)
        if spec is None:
            raise _unknown(metric)
        q = MetricQuery(spec, window, self.currency(currency), filters)
        return self._result(tenant_id, q, now, historical=False).value

    def command_rejected(self, tenant_id: str) -> None:
        """A command of ``tenant_id`` was rejected: the metrics counting rejections moved."""
        for name in REJECTION_METRICS:
            self.cache.invalidate_metric(tenant_id, name)

    # ---- series ----------------------------------------------------------------------------
    def resolve_series(
        self,
        name: str,
        window: str | None = None,
        grain: str | None = None,
        currency: str | None = None,
        dimensions: Mapping[str, str | None] | None = None,
    ) -> tuple[MetricQuery, str]:
        """(query, grain): ``window`` defaults to 1h, ``grain`` to the finest giving <= 500 points."""
        spec = self.spec(name)
        if not spec.grains:
            raise InvalidRead("no_series", f"metric {name} has no time series", {"grains": []})
        windows = [w for w in spec.windows if w in WINDOWS]
        window = window or "1h"
        if window not in windows:
            raise InvalidRead(
                "invalid_window",
                f"metric {name} offers windows {', '.join(windows)}, not {window!r}",
                {"available_windows": windows},
            )
        grain = grain or _default_grain(window, spec.grains)
        fits = [g for g in spec.grains if GRAINS[g] <= WINDOWS[window] <= GRAINS[g] * MAX_SERIES_POINTS]
        if grain not in fits:
            raise InvalidRead(
                "invalid_grain",
                f"metric {name} over {window} offers grains {', '.join(fits)}, not {grain!r}",
                {"grains": fits},
            )
        q = MetricQuery(spec, window, self.currency(currency), self.filters(spec, dimensions or {}))
        return q, grain

    def compute_series(
        self, tenant: str, q: MetricQuery, grain: str, as_of: datetime | None = None
    ) -> dict[str, Any]:
        """The series body (no ``meta``): one point per grain bucket over the window ending now or at
        ``as_of`` (then folded from the event store). Blocking."""
        if as_of is not None:
            try:
                unit, points = historical_series(
                    self.history, self.store, tenant, q.name, q.window, grain, q.currency, as_of,
                    q.filters, max_events=self.time_travel_max_events,
                )  # fmt: skip
            except TimeTravelTooLarge as exc:
                raise _too_large(exc) from exc
        else:
            if not set(q.spec.tables) <= METRIC_TABLES:
                self.freshness.catch_up()
            unit, points = compute_series(
                self.store, tenant, q.name, q.window, grain, q.currency, datetime.now(UTC), q.filters
            )
        for p in points:
            p["start"], p["end"] = iso(p["start"]), iso(p["end"])
        return {
            "metric_name": q.name,
            "unit": unit,
            "window": q.window,
            "grain": grain,
            "filters": q.filters,
            "points": points,
            "computed_at": iso(datetime.now(UTC)),
        }

    async def read_series(
        self,
        tenant: str,
        name: str,
        window: str | None = None,
        grain: str | None = None,
        currency: str | None = None,
        dimensions: Mapping[str, str | None] | None = None,
        as_of: str | None = None,
        after: ReadAfter | None = None,
    ) -> dict[str, Any]:
        """``GET /v1/metrics/{name}/series``: the body with ``meta``."""
        q, grain = self.resolve_series(name, window, grain, currency, dimensions)
        at = parse_as_of(as_of)
        fresh = await self.freshness.wait(after)
        body = await to_thread.run_sync(self.compute_series, tenant, q, grain, at)
        body["meta"] = self.freshness.meta(at, fresh)
        return body

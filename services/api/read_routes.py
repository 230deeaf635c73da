"""Transitional: the helpers route modules not yet converted (surface, query, timeline routes) import from
here, kept with their old signatures over the read side's use cases (readmodels/freshness.py,
readmodels/metric_queries.py). The metric, entity and catalog routes live in services/api/routes/;
delete this module once nothing imports it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from litestar import Request

from readmodels.errors import InvalidRead
from readmodels.freshness import Freshness, ReadAfter, iso
from readmodels.freshness import parse_as_of as _parse_as_of
from readmodels.metric_queries import MetricQueries, MetricQuery
from readmodels.metrics import METRICS
from services.api.errors import ApiError
from services.runtime import Runtime

_iso = iso


def _now_iso() -> str:
    return iso(datetime.now(UTC))


def parse_as_of(raw: str | None) -> datetime | None:
    try:
        return _parse_as_of(raw)
    except InvalidRead as exc:
        raise ApiError(422, exc.code, exc.message) from exc


def _freshness(runtime: Runtime) -> Freshness:
    return Freshness(runtime, runtime.settings.min_position_timeout_s)


async def await_position(request: Request[Any, Any, Any], runtime: Runtime) -> bool:
    """Honour ``min_position`` (``timeout_ms``, ``allow_stale``) of the request's query string."""
    params = request.query_params
    raw = params.get("min_position")
    if raw is None:
        return True
    try:
        position = int(raw)
    except ValueError as exc:
        raise ApiError(422, "invalid_min_position", "min_position must be an integer") from exc
    timeout_ms = None
    if raw_timeout := params.get("timeout_ms"):
        try:
            timeout_ms = int(raw_timeout)
        except ValueError as exc:
            raise ApiError(422, "invalid_timeout", "timeout_ms must be an integer") from exc
    after = ReadAfter(position, timeout_ms, params.get("allow_stale") in ("1", "true"))
    return await _freshness(runtime).wait(after)


def _meta(runtime: Runtime, as_of: datetime | None, fresh: bool) -> dict[str, Any]:
    return _freshness(runtime).meta(as_of, fresh)


def _flush_serving(runtime: Runtime) -> None:
    runtime.flush_serving()


def _compute_metric(
    runtime: Runtime,
    tenant: str,
    name: str,
    window: str,
    currency: str,
    as_of: datetime | None,
    filters: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The metric as served (MetricQueries.compute) of a metric known to exist."""
    settings = runtime.settings
    queries = MetricQueries(
        runtime.clickhouse, runtime.store, runtime.store, runtime.cache, _freshness(runtime),
        settings.reporting_currency, settings.time_travel_max_events,
    )  # fmt: skip
    return queries.compute(tenant, MetricQuery(METRICS[name], window, currency, filters or {}), as_of)

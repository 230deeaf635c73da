"""``/v1/metrics``: a metric's value now or as of an instant, and its time series
(readmodels/metric_queries.py: the metric as served)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import get
from litestar.params import PathParameter, QueryParameter

from readmodels.freshness import ReadAfter
from readmodels.windows import GRAINS, NOW, WINDOWS
from services.api.dependencies import READ, Reads, takes_reads
from services.api.openapi import body, errors
from services.api.reads import AllowStale, AsOf, FastJson, MinPosition, ReadMeta, TimeoutMs

MetricName = Annotated[str, PathParameter(description="a metric of GET /v1/catalog, e.g. revenue")]
Window = Annotated[
    str | None,
    QueryParameter(description=f"one of the metric's windows ({', '.join([*WINDOWS, NOW])}); default: its "
                   "first (series: 1h)"),
]  # fmt: skip
Currency = Annotated[
    str | None,
    QueryParameter(description="ISO currency of a money metric (default: the reporting currency); a "
                   "filter of a metric with a currency dimension; ignored by the others"),
]  # fmt: skip
Grain = Annotated[
    str | None,
    QueryParameter(description=f"bucket size, one of the metric's grains ({', '.join(GRAINS)}); default: "
                   "the finest giving at most 500 points"),
]

Channel = Annotated[str | None, QueryParameter(description="a dimension filter: only this channel")]
Category = Annotated[str | None, QueryParameter(description="a dimension filter: only this product category")]
Product = Annotated[str | None, QueryParameter(description="a dimension filter: only this product id")]
Method = Annotated[str | None, QueryParameter(description="a dimension filter: only this payment method")]


class MetricValue(msgspec.Struct):
    metric_name: str
    value: float
    unit: str
    window: str
    computed_at: str
    components: dict[str, Any]  # e.g. the per-currency breakdown of a money metric
    meta: ReadMeta


class SeriesPoint(msgspec.Struct):
    start: str
    end: str
    value: float
    components: dict[str, Any]


class MetricSeries(msgspec.Struct):
    metric_name: str
    unit: str
    window: str
    grain: str
    filters: dict[str, str]
    points: list[SeriesPoint]
    computed_at: str
    meta: ReadMeta


@get(
    "/v1/metrics/{metric_name:str}", opt=READ,
    responses={200: body(MetricValue, "the metric's value"), **errors(401, 404, 422, 429, 503)},
)
@takes_reads
async def metric(
    reads: Reads,
    metric_name: MetricName,
    window: Window = None,
    currency: Currency = None,
    channel: Channel = None,
    category: Category = None,
    product: Product = None,
    method: Method = None,
    as_of: AsOf = None,
    min_position: MinPosition = None,
    timeout_ms: TimeoutMs = None,
    allow_stale: AllowStale = False,
) -> FastJson:
    """The value over the window ending now (or at ``as_of``); 404 unknown metric, 422 a window or
    dimension the metric does not offer."""
    dimensions = {"currency": currency, "channel": channel, "category": category, "product": product,
                  "method": method}  # fmt: skip
    after = ReadAfter(min_position, timeout_ms, allow_stale)
    value = await reads.metrics.read(reads.tenant, metric_name, window, currency, dimensions, as_of, after)
    return FastJson(value)


@get(
    "/v1/metrics/{metric_name:str}/series", opt=READ,
    responses={200: body(MetricSeries, "one point per bucket"), **errors(401, 404, 422, 429, 503)},
)
@takes_reads
async def metric_series(
    reads: Reads,
    metric_name: MetricName,
    window: Window = None,
    grain: Grain = None,
    currency: Currency = None,
    channel: Channel = None,
    category: Category = None,
    product: Product = None,
    method: Method = None,
    as_of: AsOf = None,
    min_position: MinPosition = None,
    timeout_ms: TimeoutMs = None,
    allow_stale: AllowStale = False,
) -> FastJson:
    """The metric per time bucket (grain) over a window; 422 no_series for a metric without grains."""
    dimensions = {"currency": currency, "channel": channel, "category": category, "product": product,
                  "method": method}  # fmt: skip
    series = await reads.metrics.read_series(
        reads.tenant, metric_name, window, grain, currency, dimensions, as_of,
        ReadAfter(min_position, timeout_ms, allow_stale),
    )  # fmt: skip
    return FastJson(series)


METRIC_ROUTES = [metric, metric_series]

"""``GET /v1/metrics/{name}/series``: a metric per time bucket (grain) over a window."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from anyio import to_thread
from litestar import Request, Response, get

from readmodels.metrics import GRAINS, MAX_SERIES_POINTS, METRICS, WINDOWS, compute_series
from readmodels.time_travel import TimeTravelTooLarge, historical_series
from services.api.context import json_response, runtime_of, tenant_of
from services.api.errors import ApiError
from services.api.read_routes import _iso, _meta, await_position, dimension_filters, flush_for, parse_as_of


def _default_grain(window: str, grains: tuple[str, ...]) -> str:
    """The finest offered grain giving at most 500 points."""
    for grain in sorted(grains, key=lambda g: GRAINS[g]):
        if WINDOWS[window] / GRAINS[grain] <= 500:
            return grain
    return max(grains, key=lambda g: GRAINS[g])


@get("/v1/metrics/{metric_name:str}/series")
async def metric_series(request: Request[Any, Any, Any], metric_name: str) -> Response[bytes]:
    tenant = tenant_of(request)
    runtime = runtime_of(request)
    spec = METRICS.get(metric_name)
    if spec is None:
        raise ApiError(
            404, "unknown_metric", f"unknown metric {metric_name!r}", {"available": sorted(METRICS)}
        )
    if not spec.grains:
        raise ApiError(422, "no_series", f"metric {metric_name} has no time series", {"grains": []})
    windows = [w for w in spec.windows if w in WINDOWS]
    window = request.query_params.get("window") or "1h"
    if window not in windows:
        raise ApiError(
            422,
            "invalid_window",
            f"metric {metric_name} offers windows {', '.join(windows)}, not {window!r}",
            {"available_windows": windows},
        )
    grain = request.query_params.get("grain") or _default_grain(window, spec.grains)
    fits = [g for g in spec.grains if GRAINS[g] <= WINDOWS[window] <= GRAINS[g] * MAX_SERIES_POINTS]
    if grain not in fits:
        raise ApiError(
            422,
            "invalid_grain",
            f"metric {metric_name} over {window} offers grains {', '.join(fits)}, not {grain!r}",
            {"grains": fits},
        )
    currency = (request.query_params.get("currency") or runtime.settings.reporting_currency).upper()
    filters = dimension_filters(request, spec)
    as_of = parse_as_of(request.query_params.get("as_of"))
    fresh = await await_position(request, runtime)

    def compute() -> tuple[str, list[dict[str, Any]]]:
        if as_of is not None:  # real time travel: the series as it stood at as_of (readmodels/time_travel)
            try:
                return historical_series(
                    runtime.store,
                    runtime.clickhouse,
                    tenant,
                    metric_name,
                    window,
                    grain,
                    currency,
                    as_of,
                    filters,
                    max_events=runtime.settings.time_travel_max_events,
                )
            except TimeTravelTooLarge as exc:
                raise ApiError(
                    422, "time_travel_too_large", str(exc), {"max_events": exc.max_events}
                ) from exc
        flush_for(runtime, spec)
        now = datetime.now(UTC)
        return compute_series(runtime.clickhouse, tenant, metric_name, window, grain, currency, now, filters)

    unit, points = await to_thread.run_sync(compute)
    for p in points:
        p["start"], p["end"] = _iso(p["start"]), _iso(p["end"])
    body = {
        "metric_name": metric_name,
        "unit": unit,
        "window": window,
        "grain": grain,
        "filters": filters,
        "points": points,
        "computed_at": _iso(datetime.now(UTC)),
        "meta": _meta(runtime, as_of, fresh),
    }
    return json_response(body)


METRIC_ROUTES = [metric_series]

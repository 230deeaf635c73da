"""``GET /v1/slo``: the service level objectives over this process's own measurements (readmodels/slo.py)."""

from __future__ import annotations

import msgspec
from litestar import get
from litestar.di import NamedDependency

from readmodels.slo import SloTracker
from services.api.dependencies import READ
from services.api.openapi import errors
from services.runtime import Runtime


class SloEvents(msgspec.Struct):
    total: int
    good: int
    bad: int


class ErrorBudget(msgspec.Struct):
    allowed_bad_fraction: float
    allowed_bad_events: float
    consumed: float
    remaining: float


class Percentiles(msgspec.Struct):
    p50: float | None
    p95: float | None
    p99: float | None


class SloStatus(msgspec.Struct):
    name: str
    description: str
    sli: str  # latency:<read|command|query> | freshness | availability
    target: float
    threshold: float | None
    threshold_unit: str | None
    current: float
    error_budget_remaining: float
    status: str  # healthy | at_risk | breached
    window_days: float
    window_hours: int
    events: SloEvents
    error_budget: ErrorBudget
    burn_rates: dict[str, float | None]
    no_data: bool
    percentiles: Percentiles | msgspec.UnsetType = msgspec.UNSET


class ErrorRates(msgspec.Struct):
    requests: int
    server_errors: int
    server_error_rate: float
    commands: int
    command_rejections: int
    command_rejection_rate: float


class SloReport(msgspec.Struct):
    slos: list[SloStatus]
    measured_since: str
    computed_at: str
    error_rates_1h: ErrorRates
    freshness_now_seconds: float
    as_of_position: int


@get("/v1/slo", opt=READ, responses=errors(401), sync_to_thread=False)
def slo(
    tenant: NamedDependency[str], slo: NamedDependency[SloTracker], runtime: NamedDependency[Runtime]
) -> SloReport:
    """Each objective's current good fraction, error budget and burn rates (1h, 6h), and the last
    hour's error rates; ``freshness_now_seconds`` is how far the read models lag right now."""
    report = slo.report()
    report["freshness_now_seconds"] = runtime.freshness_seconds()
    report["as_of_position"] = runtime.watermark
    return msgspec.convert(report, SloReport)


SLO_ROUTES = [slo]

"""Health (API.md): an always-200 summary, liveness, readiness. No key needed. The checks are
readmodels/health.py."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal

import msgspec
from litestar import Response, get
from litestar.di import NamedDependency

from readmodels.health import Component, Health
from services.api.blocking import in_thread
from services.api.dependencies import PUBLIC_ROUTE
from services.runtime import Runtime


class HealthComponent(msgspec.Struct):
    # event_store | read_models | projector | lake | freshness; engines (services/health_probes.py):
    # kafka | connect | flink | redis | workers | legacy:<source>
    name: str
    status: Literal["healthy", "degraded", "unhealthy"]
    message: str
    metrics: dict[str, Any]  # freshness: last_event_age_seconds, lag_seconds, as_of_position
    source: str


class HealthReport(msgspec.Struct):
    status: Literal["healthy", "degraded", "unhealthy"]
    checked_at: str
    components: list[HealthComponent]


class Liveness(msgspec.Struct):
    status: Literal["alive"]


class Readiness(msgspec.Struct):
    status: Literal["ready", "not_ready"]
    components: list[HealthComponent]


def _component(c: Component) -> HealthComponent:
    return HealthComponent(c.name, c.status, c.message, c.metrics, c.source)  # type: ignore[arg-type]


def health_report(runtime: Runtime) -> dict[str, Any]:
    """The report of a runtime as a JSON-ready dict (tests of the runtime read it without HTTP)."""
    health = Health(runtime.store, runtime.clickhouse, runtime, engines=runtime.engine_health.components)
    return asdict(health.report())


@get("/v1/health", opt=PUBLIC_ROUTE, security=[{}])
@in_thread
def health(health: NamedDependency[Health]) -> HealthReport:
    """200 always: ``healthy``, ``degraded`` or ``unhealthy`` overall and per component."""
    report = health.report()
    return HealthReport(report.status, report.checked_at, [_component(c) for c in report.components])  # type: ignore[arg-type]


@get("/v1/health/live", opt=PUBLIC_ROUTE, security=[{}], sync_to_thread=False)
def live() -> Liveness:
    return Liveness("alive")


@get("/v1/health/ready", opt=PUBLIC_ROUTE, security=[{}])
@in_thread
def ready(health: NamedDependency[Health]) -> Response[Readiness]:
    """200 once the event store and the read models answer, the serving projector runs and no required
    engine (kafka, connect, flink; redis when it holds the rate limits) is unhealthy; until then
    503 with the same body (``status: not_ready``) -- a probe's answer, not an error in the error shape."""
    state = health.readiness()
    body = Readiness("ready" if state.ready else "not_ready", [_component(c) for c in state.components])
    return Response(body, status_code=200 if state.ready else 503)


HEALTH_ROUTES = [health, live, ready]

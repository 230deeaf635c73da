"""Health: always-200 summary, liveness, readiness (API.md)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from anyio import to_thread
from litestar import Request, Response, get
from sqlalchemy import text

from services.api.context import json_response, runtime_of
from services.runtime import Runtime


def _component(name: str, status: str, message: str, source: str, metrics: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "status": status, "message": message, "metrics": metrics, "source": source}


def _check_postgres(runtime: Runtime) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        with runtime.engine.connect() as conn:
            head = conn.execute(text("SELECT coalesce(max(position), 0) FROM events")).scalar_one()
    except Exception as exc:
        return _component(
            "event_store", "unhealthy", f"postgres unreachable: {type(exc).__name__}", "postgres", {}
        )
    ms = round((time.perf_counter() - started) * 1000, 2)
    return _component(
        "event_store", "healthy", "postgres reachable", "postgres", {"head_position": head, "latency_ms": ms}
    )


def _check_clickhouse(runtime: Runtime) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        runtime.clickhouse.query("SELECT 1")
    except Exception as exc:
        return _component(
            "read_models", "unhealthy", f"clickhouse unreachable: {type(exc).__name__}", "clickhouse", {}
        )
    ms = round((time.perf_counter() - started) * 1000, 2)
    return _component("read_models", "healthy", "clickhouse reachable", "clickhouse", {"latency_ms": ms})


def _projector_components(runtime: Runtime) -> list[dict[str, Any]]:
    out = []
    for name, runner in (("projector", runtime.serving_runner), ("lake", runtime.lake_runner)):
        if runner is None:
            continue
        st = runtime.status_of(runner)
        error = st.get("last_error")
        status = "degraded" if error else "healthy"
        out.append(_component(name, status, error or f"{runner.name} projector running", runner.name, st))
    return out


def _freshness(runtime: Runtime) -> dict[str, Any]:
    runner = runtime.serving_runner
    last = runner.status.last_recorded_at if runner else None
    age = (datetime.now(UTC) - last).total_seconds() if last else None
    lag = runtime.freshness_seconds()
    status = "healthy" if lag < 5 else "degraded"
    return _component(
        "freshness",
        status,
        f"read models lag the event store by {lag:.3f}s",
        "projector",
        {
            "last_event_age_seconds": round(age, 3) if age is not None else None,
            "lag_seconds": lag,
            "as_of_position": runtime.watermark,
        },
    )


def health_report(runtime: Runtime) -> dict[str, Any]:
    components = [
        _check_postgres(runtime),
        _check_clickhouse(runtime),
        *_projector_components(runtime),
        _freshness(runtime),
    ]
    states = {c["status"] for c in components}
    overall = "unhealthy" if "unhealthy" in states else "degraded" if "degraded" in states else "healthy"
    return {
        "status": overall,
        "checked_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "components": components,
    }


@get("/v1/health")
async def health(request: Request[Any, Any, Any]) -> Response[bytes]:
    return json_response(await to_thread.run_sync(health_report, runtime_of(request)))


@get("/v1/health/live")
async def live() -> Response[bytes]:
    return json_response({"status": "alive"})


@get("/v1/health/ready")
async def ready(request: Request[Any, Any, Any]) -> Response[bytes]:
    runtime = runtime_of(request)
    report = await to_thread.run_sync(lambda: [_check_postgres(runtime), _check_clickhouse(runtime)])
    ok = all(c["status"] == "healthy" for c in report) and runtime.serving_runner is not None
    return json_response({"status": "ready" if ok else "not_ready", "components": report}, 200 if ok else 503)


HEALTH_ROUTES = [health, live, ready]

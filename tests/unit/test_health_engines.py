"""How engine components enter the health report and readiness (readmodels/health.py), and how a cached
probe ages (services/health_probes.py). Pure logic: the probes' real engines are killed in
tests/e2e/test_distributed_healing.py."""

from __future__ import annotations

import time
from typing import Any

from readmodels.health import Component, Health
from services.health_probes import CachedProbe


class Store:
    def head_position(self) -> int:
        return 7


class ReadModels:
    def query(self, sql: str) -> list[Any]:
        return []


class Status:
    last_recorded_at = None


class Runner:
    name = "serving-loader"
    status = Status()


class Pipeline:
    def __init__(self, error_age: float | None = None) -> None:
        self.serving_runner = Runner()
        self.lake_runner = None
        self.watermark = 7
        self.error_age = error_age

    def status_of(self, runner: Any) -> dict[str, Any]:
        if self.error_age is None:
            return {"last_error": None, "last_error_at": None}
        return {"last_error": "kafka: 1/1 brokers are down", "last_error_at": time.time() - self.error_age}

    def freshness_seconds(self) -> float:
        return 0.0


def _health(engines: list[Component], pipeline: Pipeline | None = None) -> Health:
    return Health(Store(), ReadModels(), pipeline or Pipeline(), engines=lambda: engines)  # type: ignore[arg-type]


def test_an_unhealthy_required_engine_makes_the_report_unhealthy_and_readiness_fail() -> None:
    kafka = Component("kafka", "unhealthy", "broker 127.0.0.1:9 unreachable", "kafka", {}, required=True)
    legacy = Component("legacy:shop", "healthy", "streaming", "legacy-cdc", {})
    report = _health([kafka, legacy]).report()
    assert report.status == "unhealthy"
    assert [c.name for c in report.components][-2:] == ["kafka", "legacy:shop"]
    ready = _health([kafka, legacy]).readiness()
    assert not ready.ready and [c.name for c in ready.components] == ["event_store", "read_models", "kafka"]


def test_a_degraded_required_engine_or_an_unhealthy_optional_one_keeps_readiness() -> None:
    connect = Component("connect", "degraded", "connector RESTARTING", "kafka-connect", {}, required=True)
    workers = Component("workers", "unhealthy", "no worker heartbeat", "redis", {})
    assert _health([connect, workers]).readiness().ready
    assert _health([connect, workers]).report().status == "unhealthy"


def test_the_loaders_last_error_degrades_it_while_recent_and_is_still_shown_after() -> None:
    def projector(error_age: float) -> Component:
        return next(c for c in _health([], Pipeline(error_age)).report().components if c.name == "projector")

    recent = projector(2.0)
    assert recent.status == "degraded" and "brokers are down" in recent.message
    old = projector(300.0)
    assert old.status == "healthy" and "last error 300s ago: kafka: 1/1 brokers are down" in old.message


def test_a_cached_probe_marks_its_answers_required_and_distrusts_a_stale_one() -> None:
    calls = []

    def probe() -> list[Component]:
        calls.append(1)
        return [Component("flink", "healthy", "job running", "flink", {})]

    cached = CachedProbe("flink", probe, required=True, stale_after=5.0)
    assert [(c.status, c.message) for c in cached.components()] == [("degraded", "not probed yet")]
    cached.run_once()
    assert [(c.status, c.required) for c in cached.components()] == [("healthy", True)]
    at, found = cached._kept  # type: ignore[misc]
    cached._kept = (at - 6.0, found)  # its thread has not answered for 6 s
    assert cached.components()[0].status == "unhealthy" and "not answered" in cached.components()[0].message


def test_a_probe_that_raises_is_an_unhealthy_answer() -> None:
    def probe() -> list[Component]:
        raise ConnectionError("boom")

    cached = CachedProbe("redis", probe, required=False)
    cached.run_once()
    (c,) = cached.components()
    assert (c.name, c.status, c.required) == ("redis", "unhealthy", False) and "boom" in c.message

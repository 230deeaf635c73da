"""Health (``/v1/health``, ``/ready``): is the event store reachable, are the read models reachable,
how are the projectors doing, how far behind the store are the read models, and (``engines``) what
the background probes last said about the engines of the pipeline (Kafka, Connect, Flink, Redis,
workers, legacy sources: services/health_probes.py). Always answers; each component says ``healthy``,
``degraded`` or ``unhealthy`` and the report takes the worst. Readiness needs the store, the read
models, the serving projector and every engine component marked ``required``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from readmodels.ports import ReadModelStore

FRESH_S = 5.0  # read models lagging the store by more than this are degraded
RECENT_ERROR_S = 30.0  # a projector whose last error is older than this is healthy again


class EventStoreHead(Protocol):
    def head_position(self) -> int: ...


class Pipeline(Protocol):
    """What keeps the read models current in this process (services/runtime.py)."""

    @property
    def serving_runner(self) -> Any: ...  # the serving projector or loader (None before it starts)

    @property
    def lake_runner(self) -> Any: ...

    @property
    def watermark(self) -> int: ...

    def status_of(self, runner: Any) -> dict[str, Any]: ...

    def freshness_seconds(self) -> float: ...


@dataclass(frozen=True)
class Component:
    name: str
    status: str  # healthy | degraded | unhealthy
    message: str
    source: str
    metrics: dict[str, Any]
    required: bool = False  # readiness waits for it (engine components)


@dataclass(frozen=True)
class Report:
    status: str
    checked_at: str
    components: list[Component]


@dataclass(frozen=True)
class Readiness:
    ready: bool
    components: list[Component]


def overall(components: list[Component]) -> str:
    states = {c.status for c in components}
    return "unhealthy" if "unhealthy" in states else "degraded" if "degraded" in states else "healthy"


class Health:
    def __init__(
        self, store: EventStoreHead, read_models: ReadModelStore, pipeline: Pipeline,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        engines: Callable[[], list[Component]] = lambda: [],
    ) -> None:  # fmt: skip
        self.store = store
        self.read_models = read_models
        self.pipeline = pipeline
        self.clock = clock
        self.engines = engines  # cached results of the background probes: must answer at once

    def event_store(self) -> Component:
        started = time.perf_counter()
        try:
            head = self.store.head_position()
        except Exception as exc:
            return Component(
                "event_store", "unhealthy", f"postgres unreachable: {type(exc).__name__}", "postgres", {}
            )
        ms = round((time.perf_counter() - started) * 1000, 2)
        return Component(
            "event_store",
            "healthy",
            "postgres reachable",
            "postgres",
            {"head_position": head, "latency_ms": ms},
        )

    def read_model_store(self) -> Component:
        started = time.perf_counter()
        try:
            self.read_models.query("SELECT 1")
        except Exception as exc:
            return Component(
                "read_models", "unhealthy", f"clickhouse unreachable: {type(exc).__name__}", "clickhouse", {}
            )
        ms = round((time.perf_counter() - started) * 1000, 2)
        return Component("read_models", "healthy", "clickhouse reachable", "clickhouse", {"latency_ms": ms})

    def projectors(self) -> list[Component]:
        out = []
        for name, runner in (
            ("projector", self.pipeline.serving_runner),
            ("lake", self.pipeline.lake_runner),
        ):
            if runner is None:
                continue
            st = self.pipeline.status_of(runner)
            error, at = st.get("last_error"), st.get("last_error_at")
            ago = time.time() - at if error and at else None
            if error and (ago is None or ago < RECENT_ERROR_S):
                out.append(Component(name, "degraded", error, runner.name, st))
            else:
                said = f" (last error {ago:.0f}s ago: {error})" if error and ago is not None else ""
                message = f"{runner.name} projector running{said}"
                out.append(Component(name, "healthy", message, runner.name, st))
        return out

    def freshness(self) -> Component:
        runner = self.pipeline.serving_runner
        last = runner.status.last_recorded_at if runner else None
        age = (self.clock() - last).total_seconds() if last else None
        lag = self.pipeline.freshness_seconds()
        return Component(
            "freshness",
            "healthy" if lag < FRESH_S else "degraded",
            f"read models lag the event store by {lag:.3f}s",
            "projector",
            {
                "last_event_age_seconds": round(age, 3) if age is not None else None,
                "lag_seconds": lag,
                "as_of_position": self.pipeline.watermark,
            },
        )

    def report(self) -> Report:
        components = [
            self.event_store(), self.read_model_store(), *self.projectors(), self.freshness(), *self.engines()
        ]
        checked_at = self.clock().isoformat().replace("+00:00", "Z")
        return Report(overall(components), checked_at, components)

    def readiness(self) -> Readiness:
        """Ready when the store and the read models answer, the serving projector runs and no required
        engine is unhealthy."""
        components = [self.event_store(), self.read_model_store()]
        ok = all(c.status == "healthy" for c in components) and self.pipeline.serving_runner is not None
        required = [c for c in self.engines() if c.required]
        ok = ok and all(c.status != "unhealthy" for c in required)
        components += required
        return Readiness(ok, components)

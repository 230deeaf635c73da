"""The engine probes of ``/v1/health`` (connectors/engine_probes.py), run in the background.

Each probe has its own daemon thread that runs it every second and keeps the answer; the health route
reads the kept answers and never waits on an engine. A probe's network waits are bounded (1 s), so a
dead engine is named within about two seconds; an answer older than ``STALE_S`` (the probe itself is
stuck) is reported as unhealthy rather than trusted.

Which probes run follows the settings: Kafka, Connect and Flink in the distributed deployment (ours
or the ``--external`` addresses), Redis when one is configured, the worker fleet's heartbeats, and
one component per legacy source when the legacy captures run.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from connectors import engine_probes as probes
from readmodels.health import Component
from services.config import Settings

if TYPE_CHECKING:
    from services.runtime import Runtime

log = logging.getLogger(__name__)

INTERVAL_S = 1.0
STALE_S = 5.0
CONNECTOR = "agentflow-events"  # services/distributed/stack.py registers it under this name


class CachedProbe:
    def __init__(
        self, name: str, probe: Callable[[], list[Component]], required: bool,
        interval: float = INTERVAL_S, stale_after: float = STALE_S,
    ) -> None:  # fmt: skip
        self.name = name
        self.probe = probe
        self.required = required
        self.interval = interval
        self.stale_after = stale_after
        self._kept: tuple[float, list[Component]] | None = None

    def run_once(self) -> None:
        try:
            found = self.probe()
        except Exception as exc:  # a probe's own failure is an answer too
            log.debug("health probe %s failed", self.name, exc_info=True)
            why = f"probe failed: {type(exc).__name__}: {exc}"
            found = [Component(self.name, "unhealthy", why, self.name, {})]
        self._kept = (time.monotonic(), [dataclasses.replace(c, required=self.required) for c in found])

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.run_once()
            stop.wait(self.interval)

    def components(self) -> list[Component]:
        kept = self._kept
        if kept is None:  # the first second after start: only a required engine is worth a word
            waiting = Component(self.name, "degraded", "not probed yet", self.name, {}, True)
            return [waiting] if self.required else []
        at, found = kept
        age = time.monotonic() - at
        if age > self.stale_after:
            return [Component(self.name, "unhealthy", f"probe has not answered for {age:.0f}s", self.name,
                              {}, self.required)]  # fmt: skip
        return found


class EngineHealth:
    """The cached engine components for readmodels.health.Health (its ``engines``)."""

    def __init__(self, cached: list[CachedProbe]) -> None:
        self.cached = cached
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @classmethod
    def for_settings(cls, settings: Settings, runtime: Runtime) -> EngineHealth:
        cached: list[CachedProbe] = []

        def one(name: str, p: probes.Probe, required: bool) -> None:
            cached.append(CachedProbe(name, lambda: [p()], required))

        if settings.deployment == "distributed" and settings.kafka_bootstrap:
            topics = [f"{settings.topic_prefix}.{t}" for t in ("events", "serving", "deadletter")]
            one("kafka", probes.kafka_probe(settings.kafka_bootstrap, topics), True)
            if settings.connect_url:
                one("connect", probes.connect_probe(settings.connect_url, CONNECTOR), True)
            if settings.flink_rest_url:
                one("flink", probes.flink_probe(settings.flink_rest_url), True)
        redis_url = settings.redis_url or settings.rate_limit_redis_url
        if redis_url:  # required when the shared rate limits live there: no budget can be judged without it
            one("redis", probes.redis_probe(redis_url), bool(settings.rate_limit_redis_url))
        if settings.workers_enabled or settings.alerts_enabled:
            from connectors.worker_heartbeats import HeartbeatStore

            expected = ("alerts",) if settings.alerts_enabled else ()
            one("workers", probes.workers_probe(HeartbeatStore(runtime.engine), expected), False)
        if settings.legacy_sources_enabled:

            def statuses() -> list[dict[str, object]]:
                return runtime.legacy.statuses() if runtime.legacy is not None else []

            cached.append(CachedProbe("legacy", probes.legacy_probe(statuses), False))
        return cls(cached)

    def start(self) -> None:
        for c in self.cached:
            t = threading.Thread(target=c.run, args=(self._stop,), name=f"health-{c.name}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=2)

    def components(self) -> list[Component]:
        return [c for cached in self.cached for c in cached.components()]

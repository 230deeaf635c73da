"""The Prometheus values read off this process's live parts when ``/metrics`` is scraped (nothing on any
hot path): how far each projector (embedded tailers, or the distributed serving loader) trails the
event store, in positions and in seconds, what it has applied, the read cache's hits and misses, each
legacy source's lag and each Kafka consumer's lag (connectors/kafka_lag.py). The metrics recorded as work
happens are connectors/prometheus_metrics.py's.

One collector per process, registered once; ``watch`` points it at the runtime and cache the process
serves (the last one built wins: a process serves one container; tests build several).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from readmodels.read_cache import ReadCache
    from services.runtime import Runtime

log = logging.getLogger("agentflow.metrics")

HEAD = "agentflow_event_store_head_position"
WATERMARK = "agentflow_projector_watermark_position"
LAG_POSITIONS = "agentflow_projector_lag_positions"
LAG_SECONDS = "agentflow_projector_lag_seconds"
APPLIED = "agentflow_projector_applied_events"
CACHE = "agentflow_read_cache_lookups"
LEGACY_LAG = "agentflow_legacy_source_lag_seconds"
KAFKA_LAG = "agentflow_kafka_consumer_lag_messages"


class RuntimeGauges(Collector):
    def __init__(self) -> None:
        self.runtime: Runtime | None = None
        self.cache: ReadCache | None = None

    def watch(self, runtime: Runtime, cache: ReadCache) -> None:
        self.runtime, self.cache = runtime, cache

    def unwatch(self, runtime: Runtime) -> None:
        """Forget ``runtime`` (its container closed), unless another one is watched since."""
        if self.runtime is runtime:
            self.runtime, self.cache = None, None

    def describe(self) -> Iterator[Any]:
        """The families without values: the registry learns the names without touching the runtime."""
        return iter(self._families())

    def _families(self) -> tuple[Any, ...]:
        return (
            GaugeMetricFamily(HEAD, "Highest committed position in the event store"),
            GaugeMetricFamily(WATERMARK, "Every position up to this one is applied, per projector",
                              labels=["projector"]),
            GaugeMetricFamily(LAG_POSITIONS, "Event store head minus the projector's watermark",
                              labels=["projector"]),
            GaugeMetricFamily(LAG_SECONDS, "Seconds the projector's read model trails the event store (0 "
                              "when caught up)", labels=["projector"]),
            CounterMetricFamily(APPLIED, "Events the projector applied since this process started",
                                labels=["projector"]),
            CounterMetricFamily(CACHE, "Read cache lookups (metric and entity answers), by result: hit or "
                                "miss", labels=["result"]),
            GaugeMetricFamily(LEGACY_LAG, "Legacy database commit -> applied here, for each source's last "
                              "record", labels=["source"]),
            GaugeMetricFamily(KAFKA_LAG, "Kafka messages behind, per consumer group and topic: high "
                              "watermark minus the group's committed offset, summed over partitions "
                              "(librdkafka statistics; absent while the broker is down)",
                              labels=["group", "topic"]),
        )  # fmt: skip

    def collect(self) -> Iterator[Any]:
        head, watermark, lag_pos, lag_s, applied, cache, legacy, kafka = self._families()
        runtime = self.runtime
        if runtime is not None:
            try:
                top = runtime.store.head_position()
                head.add_metric([], top)
            except Exception as exc:  # a scrape must answer while the database does not
                log.debug("head position not read: %s", exc)
                top = None
            for runner in (runtime.serving_runner, runtime.lake_runner):
                if runner is None:
                    continue
                st = runner.status
                watermark.add_metric([st.name], st.watermark)
                applied.add_metric([st.name], st.applied)
                if top is not None:
                    lag_pos.add_metric([st.name], max(0, top - st.watermark))
                serving = runner is runtime.serving_runner
                seconds = runtime.freshness_seconds() if serving else _lag_s(st, runtime.started_at)
                lag_s.add_metric([st.name], seconds)
            if runtime.legacy is not None:
                try:
                    for source in runtime.legacy.registry.list():
                        if (lag := source.lag_seconds) is not None:
                            legacy.add_metric([source.name], lag)
                except Exception as exc:
                    log.debug("legacy source lag not read: %s", exc)
            for consumer in runtime.kafka_consumers():  # kept numbers: never a request to the broker
                for topic, behind in sorted(consumer.lag().items()):
                    kafka.add_metric([consumer.group, topic], behind)
        if self.cache is not None:
            cache.add_metric(["hit"], self.cache.hits)
            cache.add_metric(["miss"], self.cache.misses)
        return iter((head, watermark, lag_pos, lag_s, applied, cache, legacy, kafka))


def _lag_s(st: Any, started_at: float) -> float:
    """A tailing projector's lag as Runtime.freshness_seconds measures the serving one's: 0 when caught up,
    else the age of the last event it applied (of the process, before the first)."""
    if st.caught_up and not st.last_error:
        return 0.0
    if st.last_recorded_at is None:
        return max(0.0, time.time() - started_at)
    return max(0.0, time.time() - st.last_recorded_at.timestamp())


RUNTIME_GAUGES = RuntimeGauges()
REGISTRY.register(RUNTIME_GAUGES)

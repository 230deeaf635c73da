"""What the scrape-time collector reads off a runtime (services/runtime_gauges.py), over stand-ins for the
runtime's parts (pure reading logic; the live values are checked against a running server in
tests/e2e/test_prometheus_metrics.py)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from connectors.kafka_lag import ConsumerLag
from projections.runner import RunnerStatus
from services.runtime_gauges import RuntimeGauges


def _samples(collector: RuntimeGauges) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    families = list(collector.collect())
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


def _runtime(
    head: Any, serving: RunnerStatus, lake: RunnerStatus | None, legacy: Any = None, kafka: Any = ()
) -> Any:
    return SimpleNamespace(
        store=SimpleNamespace(head_position=head),
        serving_runner=SimpleNamespace(status=serving),
        lake_runner=None if lake is None else SimpleNamespace(status=lake),
        legacy=legacy, started_at=time.time() - 5, freshness_seconds=lambda: 0.0,
        kafka_consumers=lambda: list(kafka),
    )  # fmt: skip


def test_lag_watermarks_applied_cache_and_legacy() -> None:
    old = datetime.now(UTC) - timedelta(seconds=30)
    serving = RunnerStatus("clickhouse", watermark=90, applied=40, caught_up=True)
    lake = RunnerStatus("iceberg", watermark=70, applied=20, caught_up=False, last_recorded_at=old)
    sources = [SimpleNamespace(name="shop", lag_seconds=1.5), SimpleNamespace(name="new", lag_seconds=None)]
    legacy = SimpleNamespace(registry=SimpleNamespace(list=lambda: sources))
    gauges = RuntimeGauges()
    loader, ingest = ConsumerLag("af-serving-loader-h"), ConsumerLag("af-legacy-ingest")
    up = {"b": {"nodeid": 1, "state": "UP"}}
    part = {"partition": 0, "leader": 1, "desired": True, "hi_offset": 12, "committed_offset": 9}
    loader.on_stats(json.dumps({"brokers": up, "topics": {"af.serving": {"partitions": {"0": part}}}}))
    kafka = (loader, ingest)  # the ingest consumer reported nothing: no series
    gauges.watch(_runtime(lambda: 100, serving, lake, legacy, kafka), SimpleNamespace(hits=7, misses=3))  # type: ignore[arg-type]
    got = _samples(gauges)
    assert got[("agentflow_event_store_head_position", ())] == 100
    assert got[("agentflow_projector_lag_positions", (("projector", "clickhouse"),))] == 10
    assert got[("agentflow_projector_lag_positions", (("projector", "iceberg"),))] == 30
    assert got[("agentflow_projector_watermark_position", (("projector", "iceberg"),))] == 70
    assert got[("agentflow_projector_applied_events_total", (("projector", "clickhouse"),))] == 40
    assert got[("agentflow_projector_lag_seconds", (("projector", "clickhouse"),))] == 0.0
    assert 29 < got[("agentflow_projector_lag_seconds", (("projector", "iceberg"),))] < 3600
    assert got[("agentflow_read_cache_lookups_total", (("result", "hit"),))] == 7
    assert got[("agentflow_read_cache_lookups_total", (("result", "miss"),))] == 3
    assert got[("agentflow_legacy_source_lag_seconds", (("source", "shop"),))] == 1.5
    assert not any(k[0] == "agentflow_legacy_source_lag_seconds" and ("source", "new") in k[1] for k in got)
    kafka_lag = {k[1]: v for k, v in got.items() if k[0] == "agentflow_kafka_consumer_lag_messages"}
    assert kafka_lag == {(("group", "af-serving-loader-h"), ("topic", "af.serving")): 3}


def test_a_database_that_does_not_answer_leaves_out_what_needs_it() -> None:
    def down() -> int:
        raise OSError("connection refused")

    gauges = RuntimeGauges()
    serving = RunnerStatus("clickhouse", watermark=5, caught_up=True)
    gauges.watch(_runtime(down, serving, None), SimpleNamespace(hits=0, misses=0))  # type: ignore[arg-type]
    got = _samples(gauges)
    assert ("agentflow_event_store_head_position", ()) not in got
    assert not any(k[0] == "agentflow_projector_lag_positions" for k in got)
    assert got[("agentflow_projector_watermark_position", (("projector", "clickhouse"),))] == 5


def test_described_without_a_runtime() -> None:
    names = {f.name for f in RuntimeGauges().describe()}
    assert "agentflow_projector_lag_seconds" in names and "agentflow_read_cache_lookups" in names
    assert list(RuntimeGauges().collect())  # families, no samples, no error

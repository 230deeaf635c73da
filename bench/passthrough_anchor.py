"""Anchor of the distributed throughput figures: how fast a Flink job that only deserialises and forwards
(bench/flink_passthrough.py) drains the CDC topic the projection job reads, on the same Kafka and the
same PyFlink settings, in the same run. Started once the sustained-load ladder is over, it reads the
whole topic from the earliest offset; its rate is the slope of the records it has written to
``<prefix>.passthrough`` between 10% and 90% of the topic (start-up and the tail left out).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from bench.machine import percentile
from services.distributed.flink_job import FlinkJob


class PassthroughJob(FlinkJob):
    """FlinkJob's launcher (venv, jars, temp dirs, process group) running the passthrough job."""

    def __init__(self, run_dir: Path, bootstrap: str, topic_prefix: str) -> None:
        super().__init__(run_dir, bootstrap, "postgresql://unused/unused", "file:///unused", topic_prefix,
                         lake=False)  # fmt: skip
        self.group_id = f"bench-passthrough-{uuid.uuid4().hex[:8]}"

    def command(self, python: Path) -> list[str]:
        return [
            str(python), "-m", "bench.flink_passthrough",
            "--bootstrap", self.bootstrap, "--topic-prefix", self.topic_prefix, "--group-id", self.group_id,
            *self.runtime_args(),
        ]  # fmt: skip


def topic_records(consumer: Any, topic: str) -> int:
    """Records in ``topic`` (high minus low watermark over its partitions); 0 while it does not exist."""
    from confluent_kafka import TopicPartition

    meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if meta is None or meta.error is not None:
        return 0
    total = 0
    for p in meta.partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        total += high - low
    return int(total)


def steady_rate(samples: list[tuple[float, int]], total: int) -> float:
    """Records/s between 10% and 90% of ``total`` (least squares over those samples)."""
    mid = [(t, n) for t, n in samples if 0.1 * total <= n <= 0.9 * total]
    if len(mid) < 2:
        mid = samples
    if len(mid) < 2:
        return 0.0
    mt = sum(t for t, _ in mid) / len(mid)
    mn = sum(n for _, n in mid) / len(mid)
    den = sum((t - mt) ** 2 for t, _ in mid)
    return sum((t - mt) * (n - mn) for t, n in mid) / den if den else 0.0


def measure_passthrough(run_dir: Path, bootstrap: str, topic_prefix: str, timeout: float = 600.0,
                        say: Any = print) -> dict[str, Any]:  # fmt: skip
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-count-{uuid.uuid4().hex[:8]}"})
    job = PassthroughJob(run_dir, bootstrap, topic_prefix)
    source, sink = f"{topic_prefix}.events", f"{topic_prefix}.passthrough"
    try:
        total = topic_records(consumer, source)
        already = topic_records(consumer, sink)  # a previous passthrough on these topics
        say(f"passthrough anchor: draining {total} CDC records ...")
        started = time.monotonic()
        job.start()
        samples: list[tuple[float, int]] = []
        steps: list[float] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(0.5)
            done = topic_records(consumer, sink) - already
            now = time.monotonic()
            if samples and done > samples[-1][1]:
                steps.append((done - samples[-1][1]) / (now - samples[-1][0]))
            samples.append((now, done))
            if done >= total:
                break
        forwarded = samples[-1][1] if samples else 0
        first = next((t for t, n in samples if n > 0), None)
        return {
            "records": total,
            "forwarded": forwarded,
            "execution_mode": job.execution_mode,
            "events_per_s": round(steady_rate(samples, total), 1),
            "first_to_last_s": round(samples[-1][0] - first, 1) if first is not None and samples else None,
            "start_to_last_s": round(samples[-1][0] - started, 1) if samples else None,
            "half_second_rate_p50": round(percentile(steps, 50), 1) if steps else None,
            "complete": forwarded >= total,
        }
    finally:
        job.stop()
        consumer.close()

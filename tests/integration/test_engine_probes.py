"""The engine probes of /v1/health (connectors/engine_probes.py) against real engines: the session's
Kafka broker and Connect worker, a Redis, a worker heartbeat in Postgres (services/heartbeat.py).
Killing engines under a running stack is tests/e2e/test_distributed_healing.py."""

from __future__ import annotations

import os

import pytest
from distributed_stack import unique_prefix
from redis_server import RedisServer
from sqlalchemy.engine import Engine
from waiting import eventually

from connectors.engine_probes import connect_probe, flink_probe, kafka_probe, redis_probe, workers_probe
from connectors.postgres_cluster import free_port
from connectors.worker_heartbeats import HeartbeatStore
from services.distributed.kafka_broker import KafkaBroker
from services.distributed.kafka_connect import KafkaConnect
from services.distributed.stack import ensure_topics
from services.heartbeat import Heartbeat

pytestmark = pytest.mark.integration


def test_kafka_probe_names_missing_topics_then_healthy_and_a_dead_address_unhealthy(
    kafka_broker: KafkaBroker,
) -> None:
    prefix = unique_prefix("probe")
    topics = [f"{prefix}.{t}" for t in ("events", "serving", "deadletter")]
    probe = kafka_probe(kafka_broker.bootstrap_servers, topics)
    missing = probe()
    assert (missing.name, missing.status) == ("kafka", "unhealthy")
    assert missing.metrics["topics_missing"] == topics
    ensure_topics(kafka_broker.bootstrap_servers, prefix)
    ok = probe()
    assert ok.status == "healthy" and ok.metrics["brokers"] == 1, ok
    dead = kafka_probe(f"127.0.0.1:{free_port()}", topics)()
    assert dead.status == "unhealthy" and "unreachable" in dead.message


def test_connect_probe_names_an_unknown_connector_and_an_unreachable_worker(
    kafka_connect: KafkaConnect,
) -> None:
    unknown = connect_probe(kafka_connect.url, "no-such-connector")()
    assert (unknown.status, unknown.message) == ("unhealthy", "connector no-such-connector not registered")
    gone = connect_probe(f"http://127.0.0.1:{free_port()}", "agentflow-events")()
    assert gone.status == "unhealthy" and gone.message.startswith("Kafka Connect unreachable")


def test_flink_probe_on_an_address_without_flink_is_unhealthy() -> None:
    c = flink_probe(f"http://127.0.0.1:{free_port()}")()
    assert (c.name, c.status) == ("flink", "unhealthy") and "unreachable" in c.message


def test_workers_probe_lists_each_live_heartbeat_and_none_after_a_clean_stop(engine: Engine) -> None:
    store = HeartbeatStore(engine)
    probe = workers_probe(store, expected=("alerts",))
    assert probe().status == "unhealthy"
    alive = {"threads": 4}
    beat = Heartbeat(store, lambda: ["webhooks"], lambda: alive["threads"], relay=True)
    beat.start()
    try:
        # the first beat is written by the heartbeat thread as it starts; no worker consumes `alerts`
        c = eventually(lambda: (found := probe()).status != "unhealthy" and found, what="a heartbeat")
        assert (c.status, c.message) == ("degraded", "no live worker consumes: alerts")
        (worker,) = c.metrics["workers"].values()
        assert worker["pid"] == os.getpid() and worker["threads_alive"] == 4 and worker["relay"] is True
        assert worker["queues"] == ["webhooks"] and 0 <= worker["age_seconds"] < 15
        assert workers_probe(store, expected=("webhooks",))().status == "healthy"
        # no live worker thread: no beat (the row would age out); a direct beat refuses to write
        alive["threads"] = 0
        assert beat.beat() is False
    finally:
        beat.stop()
    assert probe().status == "unhealthy" and store.live() == []


def test_redis_probe_healthy_then_unhealthy_when_nothing_listens(redis: RedisServer) -> None:
    assert redis_probe(redis.url)().status == "healthy"
    gone = redis_probe(f"redis://127.0.0.1:{free_port()}/0")()
    assert gone.status == "unhealthy" and gone.message.startswith("Redis unreachable")

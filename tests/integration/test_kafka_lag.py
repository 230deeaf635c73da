"""connectors/kafka_lag.ConsumerLag against a real broker (the ``kafka_broker`` session fixture): the lag
per topic follows what was produced and what the group committed, not what the consumer has read, and
goes absent when the consumer stops polling or its broker dies."""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from waiting import eventually

from connectors.kafka_lag import ConsumerLag
from services.distributed.kafka_broker import KafkaBroker

pytestmark = pytest.mark.integration

HANG_S = 120.0  # bounds a hang of the broker on a loaded machine; never a latency


@pytest.fixture()
def topic(kafka_broker: Any) -> Iterator[str]:
    name = f"lag_{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap_servers})
    for f in admin.create_topics([NewTopic(name, 2, 1)]).values():
        f.result(timeout=HANG_S)
    yield name
    for f in admin.delete_topics([name]).values():
        with contextlib.suppress(Exception):  # best effort
            f.result(timeout=30)


def _produce(bootstrap: str, topic: str, counts: dict[int, int]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for partition, n in counts.items():
        for i in range(n):
            producer.produce(topic, value=f"m{i}".encode(), partition=partition)
    assert producer.flush(HANG_S) == 0


class Polling:
    """Polls the consumer (librdkafka runs the statistics callback inside poll) while waiting."""

    def __init__(self, consumer: Consumer, lag: ConsumerLag, topic: str) -> None:
        self.consumer, self.lag, self.topic = consumer, lag, topic
        self.read = 0

    def until(self, cond: Callable[[], bool], what: str) -> None:
        def turn() -> bool:
            m = self.consumer.poll(0.05)
            if m is not None and m.error() is None:
                self.read += 1
            return cond()

        eventually(turn, timeout=HANG_S, what=lambda: f"{what} (read {self.read}, lag {self.lag.lag()})")

    def fresh_lag(self) -> int | None:
        """The lag of the first statistics reported after this call."""
        seen = self.lag.reports
        self.until(lambda: self.lag.reports > seen + 1, "fresh statistics")
        return self.lag.lag().get(self.topic)


def test_lag_is_the_high_watermark_minus_the_committed_offset(kafka_broker: Any, topic: str) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    _produce(bootstrap, topic, {0: 7, 1: 5})
    group = f"g_{uuid.uuid4().hex[:8]}"
    lag = ConsumerLag(group, interval_ms=100)
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
        "auto.offset.reset": "earliest", **lag.config(),
    })  # fmt: skip
    polling = Polling(consumer, lag, topic)
    try:
        consumer.subscribe([topic])
        polling.until(lambda: polling.read == 12, "all 12 messages read")
        # nothing committed yet: the messages not handed over stand in (none left)
        assert polling.fresh_lag() == 0
        # the lag counts what the group committed, not what was read
        part = [TopicPartition(topic, 0, 3), TopicPartition(topic, 1, 5)]
        consumer.commit(offsets=part, asynchronous=False)
        assert polling.fresh_lag() == (7 - 3) + (5 - 5)
        consumer.commit(offsets=[TopicPartition(topic, 0, 7)], asynchronous=False)
        assert polling.fresh_lag() == 0
        _produce(bootstrap, topic, {1: 3})  # three more arrive and are read, none committed
        polling.until(lambda: polling.read == 15, "the 3 new messages read")
        assert polling.fresh_lag() == 3
        consumer.commit(offsets=[TopicPartition(topic, 1, 8)], asynchronous=False)
        assert polling.fresh_lag() == 0
        # a consumer that stops polling reports nothing: its last numbers go stale, then absent
        eventually(lambda: lag.lag() == {}, timeout=HANG_S, what="stale lag dropped")
    finally:
        consumer.close()
        lag.clear()
    assert lag.lag() == {}


def test_lag_goes_absent_when_the_broker_dies_and_is_never_asked_for(tmp_path: Path) -> None:
    """A broker of its own (the session one stays up), killed with SIGKILL: the consumer's statistics
    stop confirming the partition, so the lag goes absent; reading it never waits on the broker."""
    broker = KafkaBroker(tmp_path / "kafka")
    broker.start()
    try:
        bootstrap = broker.bootstrap_servers
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for f in admin.create_topics([NewTopic("dies", 1, 1)]).values():
            f.result(timeout=HANG_S)
        _produce(bootstrap, "dies", {0: 4})
        lag = ConsumerLag("g-dies", interval_ms=100)
        consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": "g-dies", "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "reconnect.backoff.max.ms": 1000, **lag.config(),
        })  # fmt: skip
        polling = Polling(consumer, lag, "dies")
        try:
            consumer.subscribe(["dies"])
            polling.until(lambda: polling.read == 4, "all 4 messages read")
            consumer.commit(offsets=[TopicPartition("dies", 0, 1)], asynchronous=False)
            assert polling.fresh_lag() == 3
            assert broker.process is not None and broker.process.pid is not None
            os.kill(broker.process.pid, signal.SIGKILL)
            polling.until(lambda: "dies" not in lag.lag(), "lag absent with the broker dead")
            assert polling.fresh_lag() is None  # and stays absent while it is down
        finally:
            consumer.close()
    finally:
        broker.stop()

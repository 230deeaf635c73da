"""connectors/kafka_lag.ConsumerLag against a real broker (the ``kafka_broker`` session fixture): the lag
per topic follows what was produced and what the group committed, not what the consumer has read, and
goes absent when the consumer stops polling."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from waiting import eventually

from connectors.kafka_lag import ConsumerLag

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

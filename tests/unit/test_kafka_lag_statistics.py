"""connectors/kafka_lag: reading librdkafka statistics documents (pure logic; the numbers librdkafka
reports are checked against a real broker in tests/integration/test_kafka_lag.py)."""

from __future__ import annotations

import json
from typing import Any

from connectors.kafka_lag import ConsumerLag, topic_lag


def _partition(n: int, hi: int, committed: int = -1001, stored: int = -1001, leader: int = 1,
               desired: bool = True) -> dict[str, Any]:
    return {"partition": n, "leader": leader, "desired": desired, "hi_offset": hi, "lo_offset": 0,
            "committed_offset": committed, "stored_offset": stored}  # fmt: skip


def _stats(partitions: dict[str, list[dict[str, Any]]], broker_state: str = "UP") -> dict[str, Any]:
    return {
        "brokers": {"127.0.0.1:9092/1": {"nodeid": 1, "state": broker_state}},
        "topics": {t: {"partitions": {str(p["partition"]): p for p in ps}} for t, ps in partitions.items()},
    }


def test_sum_of_high_watermark_minus_committed_over_assigned_partitions() -> None:
    stats = _stats({
        "a.serving": [_partition(0, 10, committed=4, stored=10), _partition(1, 7, committed=7),
                      _partition(2, 50, committed=1, desired=False),  # not assigned to us
                      _partition(-1, -1)],  # librdkafka's unassigned pseudo partition
        "a.deadletter": [_partition(0, 3, stored=2), _partition(1, 5)],  # never committed
    })  # fmt: skip
    assert topic_lag(stats) == {"a.serving": 6, "a.deadletter": (3 - 2) + (5 - 0)}


def test_partitions_whose_leader_is_not_up_have_no_lag() -> None:
    assert topic_lag(_stats({"t": [_partition(0, 10, committed=4)]}, broker_state="DOWN")) == {}
    assert topic_lag(_stats({"t": [_partition(0, 10, committed=4, leader=2)]})) == {}
    assert topic_lag(_stats({"t": [_partition(0, -1, committed=4)]})) == {}  # high watermark unknown


def test_stale_statistics_are_absent_and_a_bad_document_keeps_the_last() -> None:
    now = [100.0]
    lag = ConsumerLag("g", interval_ms=1000, clock=lambda: now[0])
    assert lag.lag() == {}
    lag.on_stats(json.dumps(_stats({"t": [_partition(0, 9, committed=2)]})))
    assert lag.lag() == {"t": 7}
    lag.on_stats("not json")
    assert lag.lag() == {"t": 7}
    now[0] += 3.0
    assert lag.lag() == {"t": 7}
    now[0] += 0.5  # three intervals without statistics: the consumer is not polling
    assert lag.lag() == {}
    lag.on_stats(json.dumps(_stats({"t": [_partition(0, 9, committed=9)]})))
    assert lag.lag() == {"t": 0}
    lag.clear()
    assert lag.lag() == {}

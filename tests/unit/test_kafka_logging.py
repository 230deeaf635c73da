"""librdkafka's retries reach the log once per state, not once per retry (connectors/kafka_logging.py)."""

from __future__ import annotations

import logging

from connectors.kafka_logging import OncePerState


def _record(client: str, text: str) -> logging.LogRecord:
    """A record as confluent-kafka's ``logger`` callback makes it: (facility, client, message)."""
    return logging.LogRecord("agentflow.librdkafka", logging.ERROR, __file__, 1, "%s [%s] %s",
                             ("FAIL", client, text), None)  # fmt: skip


def test_a_retry_storm_passes_once_then_again_after_the_reminder_with_the_count_held_back() -> None:
    now = [0.0]
    f = OncePerState(remind_s=60.0, clock=lambda: now[0])
    refused = "127.0.0.1:{}/bootstrap: Connect failed: Connection refused (after {}ms in state CONNECT)"
    passed = []
    for i in range(400):  # 40 a second for 10 s; the numbers in the text change every time
        now[0] = i / 40
        rec = _record("rdkafka#consumer-1", refused.format(9092, i % 7))
        if f.filter(rec):
            passed.append(rec.getMessage())
    assert len(passed) == 1
    now[0] = 61.0
    rec = _record("rdkafka#consumer-1", refused.format(9092, 3) + ", 12 identical error(s) suppressed")
    assert f.filter(rec)
    assert rec.getMessage().endswith("(399 like it held back)")


def test_a_new_state_or_another_client_passes_at_once() -> None:
    f = OncePerState(remind_s=60.0, clock=lambda: 0.0)
    assert f.filter(_record("c1", "Connect failed: Connection refused"))
    assert f.filter(_record("c1", "1/1 brokers are down"))
    assert f.filter(_record("c2", "Connect failed: Connection refused"))
    assert not f.filter(_record("c1", "1/1 brokers are down"))
    plain = logging.LogRecord("x", logging.WARNING, __file__, 1, "plain %s", ("message",), None)
    assert f.filter(plain) and not f.filter(plain)

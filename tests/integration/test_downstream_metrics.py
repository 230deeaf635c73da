"""The downstream metrics against the real parts (Postgres, the webhook fleet on dramatiq-postgres, an HTTP
receiver on 127.0.0.1, the alert evaluator): webhook attempts by outcome and exhausted deliveries, alert
transitions. Expected counts come from the stores' own records (the attempt log, the alert history)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY
from sqlalchemy.engine import Engine
from test_alerts import Harness, Metric
from waiting import eventually
from webhook_receiver import Reply

pytestmark = pytest.mark.integration


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture()
def harness(engine: Engine, pg_url: str) -> Iterator[Harness]:
    h = Harness(engine, pg_url)
    try:
        h.fleet.start()
        yield h
    finally:
        h.close()


def test_failed_attempts_and_an_exhausted_delivery_are_counted(harness: Harness) -> None:
    ep, _ = harness.endpoint("/down")
    harness.receiver.script("/down", Reply(500, body=b"no"), Reply(500, body=b"no"), Reply(500, body=b"no"))
    attempts = "agentflow_webhook_attempt_duration_seconds_count"
    exhausted = "agentflow_webhook_deliveries_exhausted_total"
    failed_before, exhausted_before = sample(attempts, outcome="failed"), sample(exhausted)
    d = harness.fleet.deliver(ep.id, "t1", {"type": "x"}, "test", "webhook.test")
    assert d is not None

    def given_up() -> list[dict[str, object]] | None:
        [got] = [x for x in harness.hooks.list_deliveries("t1", ep.id) if x.id == d.id]
        return got.attempt_log if got.status == "exhausted" else None

    log = eventually(given_up, what="the delivery was never exhausted")
    assert [a["outcome"] for a in log] == ["failed"] * len(harness.fleet.settings.schedule)
    # the counters move in the worker's thread after the attempt is stored: wait for them, then exactly
    eventually(lambda: sample(exhausted) - exhausted_before == 1, what="exhausted not counted")
    assert sample(attempts, outcome="failed") - failed_before == len(log)
    assert sample(exhausted) - exhausted_before == 1


def transitions() -> Counter[tuple[str, str]]:
    """Every (from_state, to_state) count of agentflow_alert_transitions_total in this process."""
    out: Counter[tuple[str, str]] = Counter()
    for family in REGISTRY.collect():
        for x in family.samples:
            if x.name == "agentflow_alert_transitions_total":
                out[(x.labels["from_state"], x.labels["to_state"])] = int(x.value)
    return out


def test_alert_transitions_are_counted_once_each(harness: Harness) -> None:
    rule = harness.rule(for_s=0.0)  # above the threshold at once: it fires on its first evaluation
    before = transitions()
    ev = harness.evaluator(Metric(12), sweep_s=3600)
    ev.start()
    try:
        ev.request(rule.id)
        eventually(lambda: harness.state(rule).state == "firing")
    finally:
        ev.stop()
    expected = Counter((h.from_state, h.to_state) for h in harness.alerts.history("t1", rule.id))
    assert sum(expected.values()) >= 1 and all(to != "inactive" for _, to in expected), expected
    # counted after the evaluation's commit, in the evaluator's thread: wait for them, then exactly
    eventually(lambda: transitions() - before == expected, what=lambda: f"{transitions() - before}")
    assert transitions() - before == expected

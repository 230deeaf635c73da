"""Alerts against a real Postgres, the real webhook fleet (dramatiq-postgres, worker threads) and a real
HTTP receiver on 127.0.0.1: pending -> firing -> resolved with the right signed notifications (checked
with the ``standardwebhooks`` package), event-triggered evaluation, and no double firing when several
evaluators (separate connection pools, as separate processes would have) race on one rule.

The metric source is a controlled function here (the e2e test uses the real read models)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from standardwebhooks import Webhook
from webhook_helpers import eventually
from webhook_receiver import Receiver

from connectors.database import make_engine
from connectors.webhook_store import Endpoint, WebhookStore
from services.alerts.evaluator import AlertEvaluator
from services.alerts.store import AlertRule, AlertStore
from services.workers import signing
from services.workers.fleet import WebhookFleet
from services.workers.settings import WebhookSettings

pytestmark = pytest.mark.integration

FAST = WebhookSettings(
    schedule=(0, 0.3, 0.3), timeout_s=1.0, allow_private=True, lease_margin_s=2.0, sweep_interval_s=0.5,
    worker_threads=2,
)  # fmt: skip


class Metric:
    """A metric whose value the test sets; counts calls and can be slowed down to widen races."""

    def __init__(self, value: float = 0.0, delay_s: float = 0.0) -> None:
        self.value = value
        self.delay_s = delay_s
        self.calls = 0

    def __call__(
        self, tenant: str, metric: str, window: str, cur: str | None, f: dict[str, str], now: datetime
    ) -> float:
        self.calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        return self.value


class Harness:
    def __init__(self, engine: Engine, url: str) -> None:
        self.engine = engine
        self.url = url
        self.fleet = WebhookFleet.embedded(url, FAST, engine=engine)
        with engine.begin() as conn:  # messages left by earlier tests name endpoints that are gone
            conn.exec_driver_sql("DELETE FROM dramatiq.queue")
        self.hooks: WebhookStore = self.fleet.store
        self.alerts = AlertStore(engine)
        self.receiver = Receiver().start()
        self.fleet.start()

    def endpoint(self, path: str, tenant: str = "t1", **kw: Any) -> tuple[Endpoint, str]:
        secret = signing.generate_secret()
        return self.hooks.create_endpoint(tenant, self.receiver.base + path, secret, **kw), secret

    def rule(self, tenant: str = "t1", **kw: Any) -> AlertRule:
        doc = {
            "name": "many orders", "description": "", "metric": "order_count", "window": "5m",
            "currency": None, "filters": {}, "condition": "above", "threshold": 10.0, "direction": "either",
            "compare_to": "previous_evaluation", "for_s": 0.0, "keep_firing_for_s": 0.0, "cooldown_s": 0.0,
            "notify_resolved": True, "endpoint_id": None, "enabled": True,
        }  # fmt: skip
        doc.update(kw)
        return self.alerts.create(tenant, doc)

    def evaluator(
        self, metric: Metric, engine: Engine | None = None, sweep_s: float = 60.0
    ) -> AlertEvaluator:
        return AlertEvaluator(engine or self.engine, metric, kick=self.fleet.kick, sweep_s=sweep_s)

    def close(self) -> None:
        self.fleet.stop()
        self.receiver.stop()


@pytest.fixture()
def harness(engine: Engine, pg_url: str) -> Iterator[Harness]:
    h = Harness(engine, pg_url)
    try:
        yield h
    finally:
        h.close()


def moved(tenant: str, event_type: str) -> list[Any]:
    return [SimpleNamespace(tenant_id=tenant, event_type=event_type)]


def test_pending_firing_resolved_with_signed_notifications(harness: Harness) -> None:
    ep, secret = harness.endpoint("/alerts")
    rule = harness.rule(endpoint_id=ep.id, for_s=0.6)
    metric = Metric(3)
    ev = harness.evaluator(metric, sweep_s=30)  # the sweep stays out of the way: triggers and deadlines
    ev.start()
    try:
        ev.request(rule.id)
        eventually(lambda: harness.alerts.get("t1", rule.id).last_evaluated_at)  # type: ignore[union-attr]
        assert harness.alerts.get("t1", rule.id).state == "inactive"  # type: ignore[union-attr]

        # an event that moves order_count (contract moved_by) wakes the evaluator: pending
        metric.value = 12
        ev.on_applied(moved("t1", "OrderPlaced"), 1)
        eventually(lambda: harness.alerts.get("t1", rule.id).state == "pending")  # type: ignore[union-attr]
        pending_at = time.monotonic()
        assert harness.receiver.at("/alerts") == []  # pending notifies nobody
        ev.on_applied(moved("t1", "ProductRegistered"), 2)  # moves other metrics only: no evaluation
        ev.on_applied(moved("other-tenant", "OrderPlaced"), 3)  # another tenant's rules only

        # no further events: `for` elapses and its deadline (next_check_at) fires the rule
        [fired] = harness.receiver.wait_for("/alerts", 1, timeout=10)
        assert time.monotonic() - pending_at >= 0.5
        body = Webhook(secret).verify(fired.body, fired.headers)
        assert body["type"] == "alert.firing" and body["tenant_id"] == "t1"
        data = body["data"]
        assert (
            data["alert_id"] == rule.id and data["state"] == "firing" and data["previous_state"] == "pending"
        )
        assert data["value"] == 12 and data["threshold"] == 10 and data["metric"] == "order_count"
        assert data["seq"] == 2

        metric.value = 4
        ev.on_applied(moved("t1", "OrderCancelled"), 4)
        recs = harness.receiver.wait_for("/alerts", 2, timeout=10)
        resolved = Webhook(secret).verify(recs[1].body, recs[1].headers)
        assert resolved["type"] == "alert.resolved" and resolved["data"]["value"] == 4
        assert resolved["data"]["previous_state"] == "firing" and resolved["data"]["seq"] == 3
    finally:
        ev.stop()

    got = harness.alerts.get("t1", rule.id)
    assert got is not None and got.state == "resolved" and got.seq == 3 and got.last_fired_at is not None
    history = list(reversed(harness.alerts.history("t1", rule.id)))
    assert [(h.from_state, h.to_state) for h in history] == [
        ("inactive", "pending"),
        ("pending", "firing"),
        ("firing", "resolved"),
    ]
    assert history[0].notified == []
    assert history[1].notified == [recs[0].headers["webhook-id"]]
    assert history[2].notified == [recs[1].headers["webhook-id"]]
    assert [h.value for h in history] == [12, 12, 4]
    deliveries = eventually(
        lambda: (
            [d for d in harness.hooks.list_deliveries("t1", ep.id) if d.status == "succeeded"][1:]
            and harness.hooks.list_deliveries("t1", ep.id)
        )
    )
    assert sorted(d.event_type for d in deliveries) == ["alert.firing", "alert.resolved"]
    assert {d.kind for d in deliveries} == {"alert"}
    time.sleep(0.5)
    assert len(harness.receiver.at("/alerts")) == 2  # exactly two notifications, each once


def test_no_double_firing_across_evaluators(harness: Harness, pg_url: str) -> None:
    """Six evaluators on three connection pools race on one rule many times: one firing, one
    notification; the row lock (SKIP LOCKED) makes the losers skip, the seq key makes repeats no-ops."""
    ep, _ = harness.endpoint("/race")
    rule = harness.rule(endpoint_id=ep.id)
    metric = Metric(50, delay_s=0.05)
    engines = [make_engine(pg_url, pool_size=2, max_overflow=0) for _ in range(2)]
    evaluators = [harness.evaluator(metric, engine=e) for e in [harness.engine, *engines] for _ in range(2)]
    start = threading.Barrier(len(evaluators))
    results: list[Any] = []

    def hammer(ev: AlertEvaluator) -> None:
        start.wait()
        for _ in range(5):
            results.append(ev.evaluate(rule.id))

    threads = [threading.Thread(target=hammer, args=(ev,)) for ev in evaluators]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        for e in engines:
            e.dispose()
    done = [r for r in results if r is not None]
    skipped = [r for r in results if r is None]
    assert done and skipped  # some evaluations found the row locked and skipped it
    assert sum(len(r.transitions) for r in done) == 1
    history = harness.alerts.history("t1", rule.id)
    assert [(h.from_state, h.to_state) for h in history] == [("inactive", "firing")]
    harness.receiver.wait_for("/race", 1)
    time.sleep(0.8)
    assert len(harness.receiver.at("/race")) == 1
    assert len(harness.hooks.list_deliveries("t1", ep.id)) == 1


def test_a_transition_is_recorded_and_notified_once_even_if_replayed(harness: Harness) -> None:
    """The history row (rule, seq) and the delivery (endpoint, alert:<rule>:<seq>) are unique: writing
    a transition a second time fails the whole transaction, nothing is sent twice."""
    ep, _ = harness.endpoint("/once")
    rule = harness.rule(endpoint_id=ep.id)
    ev = harness.evaluator(Metric(99))
    [result] = [ev.evaluate(rule.id)]
    assert result is not None and [t.to_state for t in result.transitions] == ["firing"]
    t = result.transitions[0]
    with pytest.raises(Exception, match="alert_history_rule_seq"), harness.engine.begin() as conn:
        again = harness.hooks.add_delivery(
            ep.id, "t1", {"x": 1}, "alert", "alert.firing", f"alert:{rule.id}:1", conn
        )
        assert again is None  # the dedup key is taken
        AlertStore.add_history(conn, rule, t, [], {})
    assert len(harness.alerts.history("t1", rule.id)) == 1


def test_without_endpoint_id_notifies_endpoints_subscribed_to_alerts(harness: Harness) -> None:
    subscribed, _ = harness.endpoint("/sub", event_types=["alert.*"])
    only_resolved, _ = harness.endpoint("/res", event_types=["alert.resolved"])
    harness.endpoint("/orders", event_types=["OrderPlaced"])
    harness.endpoint("/everything")  # no event_types: every event, but alerts are opt-in
    harness.endpoint("/b", tenant="t2", event_types=["alert.*"])
    rule = harness.rule(condition="below", threshold=1.0, notify_resolved=True)
    metric = Metric(0)
    ev = harness.evaluator(metric)
    ev.evaluate(rule.id)
    metric.value = 5
    ev.evaluate(rule.id)
    sub = harness.receiver.wait_for("/sub", 2)
    assert [r.json()["type"] for r in sub] == ["alert.firing", "alert.resolved"]
    [res] = harness.receiver.wait_for("/res", 1)
    assert res.json()["type"] == "alert.resolved"
    time.sleep(0.8)
    assert {r.path for r in harness.receiver.received} == {"/sub", "/res"}


def test_change_pct_cooldown_disabled_and_metric_errors(harness: Harness) -> None:
    ep, _ = harness.endpoint("/pct")
    rule = harness.rule(endpoint_id=ep.id, condition="change_pct", threshold=50.0, direction="up",
                        notify_resolved=False)  # fmt: skip
    metric = Metric(10)
    ev = harness.evaluator(metric)
    first = ev.evaluate(rule.id)
    assert first is not None and first.baseline is None and first.holds is None and not first.transitions
    metric.value = 16  # +60 % over the previous evaluation
    second = ev.evaluate(rule.id)
    assert second is not None and second.baseline == 10 and second.state == "firing"
    metric.value = 17  # +6 %: resolves, silently (notify_resolved false)
    third = ev.evaluate(rule.id)
    assert third is not None and third.state == "resolved" and third.deliveries == []
    [rec] = harness.receiver.wait_for("/pct", 1)
    assert rec.json()["data"]["change_pct"] == pytest.approx(60.0)

    def broken(*a: object) -> float:
        raise RuntimeError("read model unavailable")

    ev.compute = broken
    err = ev.evaluate(rule.id)
    assert err is not None and err.error and "read model unavailable" in err.error
    got = harness.alerts.get("t1", rule.id)
    assert got is not None and got.state == "resolved" and got.last_error and got.next_check_at is None

    disabled = harness.alerts.update("t1", rule.id, {**rule.definition(), "enabled": False})
    assert disabled is not None and not disabled.enabled
    assert ev.evaluate(rule.id) is None  # disabled rules are not evaluated
    assert ev.evaluate("al_missing") is None

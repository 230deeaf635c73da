"""Alerts against a real Postgres, the real fleets (dramatiq-postgres; the alert scheduler enqueues, the
``evaluate_alert`` actor evaluates in worker threads) and a real HTTP receiver on 127.0.0.1: pending ->
firing -> resolved with the right signed notifications (checked with the ``standardwebhooks``
package), event-triggered evaluation, and no double firing when several evaluators (separate
connection pools, as separate processes would have) race on one rule.

The metric source is a controlled function here (the e2e test uses the real read models)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from secret_keys import TEST_BOX
from sqlalchemy.engine import Engine
from standardwebhooks import Webhook
from waiting import eventually
from webhook_receiver import Receiver

from connectors import webhook_signing as signing
from connectors.alert_store import AlertStore
from connectors.brokers import postgres_broker
from connectors.database import make_engine
from connectors.webhook_store import WebhookStore
from readmodels.alerts import AlertRule
from readmodels.webhooks import Endpoint
from services.alerts.fleet import AlertFleet
from services.config import WebhookSettings
from services.webhooks.fleet import WebhookFleet

pytestmark = pytest.mark.integration

FAST = WebhookSettings(
    schedule=(0, 0.3, 0.3), timeout_s=10.0, allow_private=True, lease_margin_s=2.0, sweep_interval_s=0.5,
    worker_threads=2,
)  # fmt: skip


class Metric:
    """A metric whose value the test sets; counts calls. With ``hold`` every read blocks until the test
    sets that event (``entered`` tells it a read is under way): an evaluation paused while it holds
    the rule's row lock."""

    def __init__(self, value: float = 0.0, hold: threading.Event | None = None) -> None:
        self.value = value
        self.hold = hold
        self.entered = threading.Event()
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(
        self, tenant: str, metric: str, window: str, cur: str | None, f: dict[str, str], now: datetime
    ) -> float:
        with self._lock:
            self.calls += 1
        if self.hold is not None:
            self.entered.set()
            self.hold.wait()
        return self.value


class ManualClock:
    """The evaluator's clock, moved by the test: `for`, keep-firing and cooldown deadlines pass when
    the test says so, however slow the machine."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


class Harness:
    def __init__(self, engine: Engine, url: str) -> None:
        self.engine = engine
        self.url = url
        self.fleet = WebhookFleet.embedded(url, FAST, engine=engine, box=TEST_BOX)
        with engine.begin() as conn:  # messages left by earlier tests name endpoints that are gone
            conn.exec_driver_sql("DELETE FROM dramatiq.queue")
        self.hooks: WebhookStore = self.fleet.store
        self.alerts = AlertStore(engine)
        self.receiver = Receiver().start()
        self.alert_fleets: list[AlertFleet] = []

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
        self,
        metric: Metric,
        engine: Engine | None = None,
        sweep_s: float = 60.0,
        clock: ManualClock | None = None,
    ) -> AlertFleet:
        """One serving process's part of the alert fleet: its scheduler and worker threads on a broker
        of its own (dramatiq-postgres on the test database), the metric being ``metric``."""
        fleet = AlertFleet(
            AlertStore(engine or self.engine), metric, postgres_broker(self.url, maxconn=4), self.url,
            kick=self.fleet.kick, sweep_s=sweep_s, clock=clock or (lambda: datetime.now(UTC)),
        )  # fmt: skip
        self.alert_fleets.append(fleet)
        return fleet

    def state(self, rule: AlertRule) -> AlertRule:
        got = self.alerts.get(rule.tenant_id, rule.id)
        assert got is not None
        return got

    def marker(self, ep: Endpoint) -> None:
        """A delivery to ``ep`` after everything it was sent so far (an endpoint gets its deliveries in
        id order): once it arrives, whatever was queued before it has been sent."""
        d = self.fleet.deliver(ep.id, ep.tenant_id, {"type": "marker"}, "test", "webhook.test")
        assert d is not None

    def close(self) -> None:
        try:
            for fleet in self.alert_fleets:
                fleet.stop()
            self.fleet.stop()
        finally:
            self.receiver.stop()


@pytest.fixture()
def harness(engine: Engine, pg_url: str) -> Iterator[Harness]:
    h = Harness(engine, pg_url)
    try:
        h.fleet.start()
        yield h
    finally:
        h.close()


def moved(tenant: str, event_type: str) -> list[Any]:
    return [SimpleNamespace(tenant_id=tenant, event_type=event_type)]


FOR_S = 300.0  # far longer than any test run: only the manual clock can make it elapse


def test_pending_firing_resolved_with_signed_notifications(harness: Harness) -> None:
    clock = ManualClock(datetime.now(UTC).replace(microsecond=0))
    t0 = clock.now
    ep, secret = harness.endpoint("/alerts")
    rule = harness.rule(endpoint_id=ep.id, for_s=FOR_S)
    # witnesses: rules that the triggers below do move, to see that the evaluator handled them
    errors = harness.rule(name="witness", metric="error_rate", condition="below", threshold=-1.0)
    elsewhere = harness.rule("other-tenant", name="witness", condition="below", threshold=-1.0)
    metric = Metric(3)
    ev = harness.evaluator(metric, sweep_s=3600, clock=clock)  # one sweep at start; then triggers, deadlines
    ev.start()
    try:
        ev.request(rule.id)
        for r in (rule, errors, elsewhere):  # the start-up sweep (and the request) evaluated every rule
            eventually(lambda r=r: harness.state(r).last_evaluated_at == t0)  # type: ignore[misc]
        assert harness.state(rule).state == "inactive"

        # an event that moves order_count (contract moved_by) wakes the evaluator: pending
        metric.value = 12
        ev.on_applied(moved("t1", "OrderPlaced"), 1)
        eventually(lambda: harness.state(rule).state == "pending")
        got = harness.state(rule)
        assert got.pending_since == t0 and got.next_check_at == t0 + timedelta(seconds=FOR_S)
        # pending notifies nobody (deliveries are written in the evaluation's own transaction)
        assert harness.hooks.list_deliveries("t1", ep.id) == [] and harness.receiver.at("/alerts") == []

        # events that move other metrics, or another tenant's, do not evaluate this rule: once the
        # witnesses they move were evaluated (at the new clock reading), this rule still was not
        t1 = clock.advance(1)
        ev.on_applied(moved("t1", "ProductRegistered"), 2)  # moves error_rate only
        ev.on_applied(moved("other-tenant", "OrderPlaced"), 3)
        for r in (errors, elsewhere):
            eventually(lambda r=r: harness.state(r).last_evaluated_at == t1)  # type: ignore[misc]
        assert harness.state(rule).last_evaluated_at == t0

        # one second before `for` has elapsed the rule is still pending
        almost = clock.advance(FOR_S - 2)
        ev.request(rule.id)
        eventually(lambda: harness.state(rule).last_evaluated_at == almost)
        assert harness.state(rule).state == "pending" and len(harness.alerts.history("t1", rule.id)) == 1
        assert harness.hooks.list_deliveries("t1", ep.id) == []

        # `for` elapses with no further event and no request: its deadline (next_check_at) fires the rule
        fired_at = clock.advance(1)
        assert fired_at == t0 + timedelta(seconds=FOR_S)
        ev.wake()
        [fired] = harness.receiver.wait_for("/alerts", 1)
        body = Webhook(secret).verify(fired.body, fired.headers)
        assert body["type"] == "alert.firing" and body["tenant_id"] == "t1"
        data = body["data"]
        assert (
            data["alert_id"] == rule.id and data["state"] == "firing" and data["previous_state"] == "pending"
        )
        assert data["value"] == 12 and data["threshold"] == 10 and data["metric"] == "order_count"
        assert data["seq"] == 2
        assert datetime.fromisoformat(body["occurred_at"]) == fired_at

        metric.value = 4
        resolved_at = clock.advance(1)
        ev.on_applied(moved("t1", "OrderCancelled"), 4)
        recs = harness.receiver.wait_for("/alerts", 2)
        resolved = Webhook(secret).verify(recs[1].body, recs[1].headers)
        assert resolved["type"] == "alert.resolved" and resolved["data"]["value"] == 4
        assert resolved["data"]["previous_state"] == "firing" and resolved["data"]["seq"] == 3
    finally:
        ev.stop()

    got = harness.state(rule)
    assert got.state == "resolved" and got.seq == 3 and got.last_fired_at == fired_at
    history = list(reversed(harness.alerts.history("t1", rule.id)))
    assert [(h.from_state, h.to_state, h.at) for h in history] == [
        ("inactive", "pending", t0),
        ("pending", "firing", t0 + timedelta(seconds=FOR_S)),  # exactly `for` after pending
        ("firing", "resolved", resolved_at),
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
    # exactly two notifications, each once: a later delivery to the endpoint is the very next request
    harness.marker(ep)
    recs = harness.receiver.wait_for("/alerts", 3)
    assert [r.json()["type"] for r in recs] == ["alert.firing", "alert.resolved", "marker"]
    assert len(harness.receiver.at("/alerts")) == 3


def test_cooldown_holds_a_refiring_until_the_clock_passes_it(harness: Harness) -> None:
    """A rule that fired holds again within its cooldown: pending, no notification, until the (manual)
    clock reaches the end of the cooldown; then the deadline alone fires it."""
    cooldown = 600.0  # far longer than any test run: only the manual clock can make it pass
    clock = ManualClock(datetime.now(UTC).replace(microsecond=0))
    t0 = clock.now
    ep, _ = harness.endpoint("/cool")
    rule = harness.rule(endpoint_id=ep.id, cooldown_s=cooldown)
    metric = Metric(12)
    ev = harness.evaluator(metric, sweep_s=3600, clock=clock)  # one sweep at start; then deadlines
    ev.start()
    try:
        eventually(lambda: harness.state(rule).state == "firing")  # the start-up sweep, at t0
        metric.value = 4
        clock.advance(1)
        resolved = ev.evaluate(rule.id)
        assert resolved is not None and resolved.state == "resolved"
        metric.value = 12
        again_at = clock.advance(1)
        again = ev.evaluate(rule.id)
        assert again is not None and [(t.from_state, t.to_state) for t in again.transitions] == [
            ("resolved", "pending")
        ]
        end_of_cooldown = t0 + timedelta(seconds=cooldown)
        assert harness.state(rule).next_check_at == end_of_cooldown
        clock.now = end_of_cooldown - timedelta(seconds=1)
        still = ev.evaluate(rule.id)
        assert still is not None and still.state == "pending" and still.transitions == []

        clock.now = end_of_cooldown
        ev.wake()  # no evaluation asked for: the evaluator's deadline check fires it
        recs = harness.receiver.wait_for("/cool", 3)
    finally:
        ev.stop()
    assert [(r.json()["type"], r.json()["data"]["seq"]) for r in recs] == [
        ("alert.firing", 1),
        ("alert.resolved", 2),
        ("alert.firing", 4),
    ]
    history = list(reversed(harness.alerts.history("t1", rule.id)))
    assert [(h.from_state, h.to_state, h.at) for h in history] == [
        ("inactive", "firing", t0),
        ("firing", "resolved", t0 + timedelta(seconds=1)),
        ("resolved", "pending", again_at),
        ("pending", "firing", end_of_cooldown),
    ]
    assert history[2].notified == []


def test_no_double_firing_across_evaluators(harness: Harness, pg_url: str) -> None:
    """Six evaluators on three connection pools: while one of them holds the rule (its evaluation paused
    inside the row lock), each of the others skips it (SKIP LOCKED); then all of them race on the rule
    many times. One firing, one notification: the seq key makes repeats no-ops."""
    ep, _ = harness.endpoint("/race")
    rule = harness.rule(endpoint_id=ep.id)
    release = threading.Event()
    metric = Metric(50, hold=release)
    engines = [make_engine(pg_url, pool_size=2, max_overflow=0) for _ in range(2)]
    evaluators = [harness.evaluator(metric, engine=e) for e in [harness.engine, *engines] for _ in range(2)]
    results: list[Any] = []

    def hammer(ev: AlertFleet, start: threading.Barrier) -> None:
        start.wait()
        for _ in range(5):
            results.append(ev.evaluate(rule.id))

    threads: list[threading.Thread] = []
    try:
        holder = threading.Thread(target=lambda: results.append(evaluators[0].evaluate(rule.id)))
        threads.append(holder)
        holder.start()
        assert metric.entered.wait(60), "the first evaluation never read the metric"
        # the holder is inside its transaction with the row locked: every other evaluator skips the rule
        skipped = [ev.evaluate(rule.id) for ev in evaluators[1:]]
        assert skipped == [None] * len(evaluators[1:]) and metric.calls == 1
        release.set()
        holder.join(60)
        assert not holder.is_alive()
        [first] = results
        assert first is not None and [(t.from_state, t.to_state) for t in first.transitions] == [
            ("inactive", "firing")
        ]

        start = threading.Barrier(len(evaluators))
        racers = [threading.Thread(target=hammer, args=(ev, start)) for ev in evaluators]
        threads += racers
        for t in racers:
            t.start()
        for t in racers:
            t.join(60)
        assert not any(t.is_alive() for t in racers)
    finally:
        release.set()
        for t in threads:
            t.join(60)
        for e in engines:
            e.dispose()
    assert len(results) == 1 + 5 * len(evaluators)
    done = [r for r in results if r is not None]
    assert sum(len(r.transitions) for r in done) == 1
    history = harness.alerts.history("t1", rule.id)
    assert [(h.from_state, h.to_state) for h in history] == [("inactive", "firing")]
    # one notification: a later delivery to the endpoint is the very next request
    harness.receiver.wait_for("/race", 1)
    harness.marker(ep)
    recs = harness.receiver.wait_for("/race", 2)
    assert [r.json()["type"] for r in recs] == ["alert.firing", "marker"]
    assert len(harness.receiver.at("/race")) == 2
    assert [d.event_type for d in harness.hooks.list_deliveries("t1", ep.id)] == [
        "webhook.test",
        "alert.firing",
    ]


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
    others = [
        harness.endpoint("/orders", event_types=["OrderPlaced"])[0],
        harness.endpoint("/everything")[0],  # no event_types: every event, but alerts are opt-in
        harness.endpoint("/b", tenant="t2", event_types=["alert.*"])[0],
    ]
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
    # the notifications' deliveries were written in the evaluations' transactions, which have
    # committed: no other endpoint has any (so nothing can ever be sent to one)
    assert [d.event_type for d in harness.hooks.list_deliveries("t1", subscribed.id)] == [
        "alert.resolved",
        "alert.firing",
    ]
    assert [d.event_type for d in harness.hooks.list_deliveries("t1", only_resolved.id)] == ["alert.resolved"]
    for ep in others:
        assert harness.hooks.list_deliveries(ep.tenant_id, ep.id) == [], ep.url
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

    ev.evaluator.compute = broken
    err = ev.evaluate(rule.id)
    assert err is not None and err.error and "read model unavailable" in err.error
    got = harness.alerts.get("t1", rule.id)
    assert got is not None and got.state == "resolved" and got.last_error and got.next_check_at is None

    disabled = harness.alerts.update("t1", rule.id, {**rule.definition(), "enabled": False})
    assert disabled is not None and not disabled.enabled
    assert ev.evaluate(rule.id) is None  # disabled rules are not evaluated
    assert ev.evaluate("al_missing") is None

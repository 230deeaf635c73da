"""Evaluating one alert rule: measure its metric, decide, and record the decision exactly once.

One evaluation = one transaction (``AlertStore.evaluation``, connectors/alert_store.py): lock the rule
row (FOR UPDATE SKIP LOCKED; a rule somebody else is evaluating is skipped), measure the metric, decide
(the pure state machine and notifications of readmodels/alerts.py), write the state, one history row
per transition (unique on rule + seq) and the webhook delivery rows of its notifications (dedup key
``alert:<rule>:<seq>``), then commit; only after the commit are the endpoints' drains enqueued (or the
webhook sweep finds them).
So any number of evaluating workers (threads, processes) never notify one transition twice, and a
crash before the commit loses the transition and its notifications together (the next evaluation
redoes it). What triggers evaluations: services/alerts/scheduler.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from connectors import tracing
from connectors.alert_store import AlertStore
from connectors.prometheus_metrics import ALERT_TRANSITIONS
from readmodels.alerts import AlertRule, MetricFn, Transition, decide, measure

log = logging.getLogger("agentflow.alerts")


@dataclass(frozen=True)
class Evaluation:
    rule_id: str
    value: float | None
    baseline: float | None
    holds: bool | None
    state: str
    transitions: list[Transition]
    deliveries: list[str]  # webhook-ids queued by this evaluation
    error: str | None = None


class AlertEvaluator:
    """Evaluates one rule at a time (``evaluate``); the ``evaluate_alert`` actor
    (services/alerts/actors.py) calls it in whichever fleet process takes the message."""

    def __init__(
        self,
        store: AlertStore,
        compute: MetricFn,
        kick: Callable[[str], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.compute = compute
        self.kick = kick
        self.clock = clock
        self.evaluations = 0  # for tests and stats

    def measure(self, rule: AlertRule, now: datetime) -> tuple[float, float | None]:
        """(value, baseline) of the rule at ``now`` (readmodels.alerts.measure)."""
        return measure(rule, self.compute, now)

    def evaluate(self, rule_id: str) -> Evaluation | None:
        """Evaluate one rule in one transaction under its row lock; None when it is gone, disabled or
        locked by another evaluator."""
        with tracing.span("alert.evaluate", {"agentflow.alert_rule": rule_id}):
            return self._evaluate(rule_id)

    def _evaluate(self, rule_id: str) -> Evaluation | None:
        kicks: set[str] = set()
        with self.store.evaluation(rule_id) as unit:
            if unit is None:
                return None
            rule = unit.rule
            now = self.clock()
            try:
                value, baseline = self.measure(rule, now)
            except Exception as exc:
                log.warning("alert %s: metric %s failed: %s", rule.id, rule.metric, exc)
                err = f"{type(exc).__name__}: {exc}"[:500]
                # next_check_at cleared: the sweep retries (no tight loop on a broken metric)
                unit.save_state(rule.rule_state, None, now, err, None)
                return Evaluation(rule.id, None, None, None, rule.state, [], [], err)
            decision = decide(rule, value, baseline, now)
            queued: list[str] = []
            for notice in decision.notices:
                sent: list[str] = []
                if notice.event_type is not None and notice.body is not None:
                    for d in unit.notify(notice.event_type, notice.body, notice.dedup_key):
                        sent.append(d.message_id)
                        kicks.add(d.endpoint_id)
                details = {"event_type": notice.event_type} if notice.event_type else {}
                unit.add_history(notice.transition, sent, details)
                queued += sent
            unit.save_state(decision.state, value, now, None, decision.next_check_at)
        self.evaluations += 1
        for notice in decision.notices:  # committed: counted once (a failed commit raised above)
            ALERT_TRANSITIONS.labels(notice.transition.from_state, notice.transition.to_state).inc()
        if self.kick is not None:
            for endpoint_id in sorted(kicks):
                try:
                    self.kick(endpoint_id)
                except Exception:  # the webhook sweep enqueues it anyway
                    log.exception("enqueueing alert delivery to %s failed", endpoint_id)
        transitions = [n.transition for n in decision.notices]
        return Evaluation(rule.id, value, baseline, decision.holds, decision.state.state, transitions, queued)

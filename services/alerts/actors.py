"""The ``evaluate_alert`` actor: one rule's evaluation, in whichever fleet process takes the message.

Declared per broker instance (like services/webhooks/actors.py), on the ``alerts`` queue, only by the
processes that serve the read models (services/alerts/fleet.py says why). A message names the rule and
the event-store position that triggered it; the evaluating process first waits (up to ``wait_s``) for
its serving read models to apply that position, so no worker judges a rule on a read model older than
the event that triggered it. A message that is lost (a killed worker, a broker restart) costs one
sweep interval: the scheduler's sweep evaluates every enabled rule (services/alerts/scheduler.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.broker import Broker

from connectors.prometheus_metrics import ALERT_EVALUATIONS
from services.alerts.evaluator import AlertEvaluator

log = logging.getLogger("agentflow.alerts")

QUEUE = "alerts"
ACTOR_NAME = "evaluate_alert"
BUSY_RETRY_MS = 200  # a rule another worker is evaluating is looked at again this much later
BUSY_RETRIES = 3

# (position, timeout_s) -> whether this process's serving read models reached the position in time
AppliedWait = Callable[[int, float], bool]


class AlertActors:
    def __init__(
        self,
        broker: Broker,
        evaluator: AlertEvaluator,
        applied: AppliedWait | None = None,
        wait_s: float = 5.0,
    ) -> None:
        self.evaluator = evaluator
        self.applied = applied
        self.wait_s = wait_s
        self.evaluate: Any = dramatiq.actor(
            actor_name=ACTOR_NAME, queue_name=QUEUE, broker=broker,
            max_retries=0,  # the sweep retries whatever fails
            time_limit=int((wait_s + 120) * 1000),
        )(self._evaluate)  # fmt: skip

    def _evaluate(self, rule_id: str, min_position: int = 0, busy: int = 0) -> None:
        if self.applied is not None and min_position > 0 and not self.applied(min_position, self.wait_s):
            ALERT_EVALUATIONS.labels("stale").inc()
            log.warning(
                "alert %s not evaluated: the read models did not reach position %d within %.0fs",
                rule_id, min_position, self.wait_s,
            )  # fmt: skip
            return
        try:
            result = self.evaluator.evaluate(rule_id)
        except Exception:
            ALERT_EVALUATIONS.labels("failed").inc()
            log.exception("evaluating alert %s failed (the sweep retries)", rule_id)
            return
        if result is not None:
            ALERT_EVALUATIONS.labels("evaluated").inc()
            return
        ALERT_EVALUATIONS.labels("skipped").inc()
        # Skipped: gone, disabled, or locked by another worker. The other worker may have measured
        # before this message's event was applied, so a locked rule is looked at again shortly.
        if busy < BUSY_RETRIES and self.evaluator.store.is_enabled(rule_id):
            self.send(rule_id, min_position, delay_ms=BUSY_RETRY_MS, busy=busy + 1)

    def send(self, rule_id: str, min_position: int = 0, delay_ms: int | None = None, busy: int = 0) -> None:
        """Enqueue an evaluation of ``rule_id`` once the read models have applied ``min_position``.
        Losing this message loses nothing but time: the sweep evaluates every rule."""
        try:
            self.evaluate.send_with_options(args=(rule_id, min_position, busy), delay=delay_ms)
        except Exception:
            log.exception("enqueueing an evaluation of alert %s failed (the sweep retries)", rule_id)

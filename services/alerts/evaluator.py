"""The alert evaluator: one thread per API process, woken by the events that move a rule's metric.

Triggers: ``on_applied`` (a ``Runtime.applied_listeners`` entry, called in the projector thread) only
records which (tenant, metric) pairs moved — the metrics each event type moves come from the metric
contracts' ``moved_by`` — and wakes this thread; rules whose ``next_check_at`` is due (``for``,
``keep_firing_for`` and cooldown deadlines) are evaluated at that instant; and a sweep every
``sweep_s`` (``AGENTFLOW_ALERT_SWEEP_S``, 5 s) evaluates every enabled rule, so windows that slide
without events are seen too.

One evaluation = one transaction (``AlertStore.evaluation``, connectors/alert_store.py): lock the rule
row (FOR UPDATE SKIP LOCKED; a rule somebody else is evaluating is skipped), measure the metric, decide
(the pure state machine and notifications of readmodels/alerts.py), write the state, one history row
per transition (unique on rule + seq) and the webhook delivery rows of its notifications (dedup key
``alert:<rule>:<seq>``), then commit; only after the commit are the endpoints' drains enqueued (or the
webhook sweep finds them).
So any number of evaluators (threads, API replicas) never notify one transition twice, and a crash
before the commit loses the transition and its notifications together (the next evaluation redoes
it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from connectors import tracing
from connectors.alert_store import AlertStore
from connectors.prometheus_metrics import ALERT_TRANSITIONS
from domain.events import RecordedEvent
from readmodels.alerts import AlertRule, MetricFn, Transition, decide, measure, metrics_by_event

log = logging.getLogger("agentflow.alerts")


def runtime_metric(runtime: Any) -> MetricFn:
    """The metric as ``GET /v1/metrics/{name}`` computes it (serving read models, no cache): the one
    metric query service's ``measure`` (readmodels/metric_queries.py), which the composition root hands
    the runtime."""
    measure: MetricFn | None = runtime.metric_source
    if measure is None:
        raise RuntimeError("Runtime.metric_source is not set (services.bootstrap.build sets it)")
    return measure


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
    name = "alerts"

    def __init__(
        self,
        store: AlertStore,
        compute: MetricFn,
        kick: Callable[[str], None] | None = None,
        sweep_s: float = 5.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.compute = compute
        self.kick = kick
        self.sweep_s = sweep_s
        self.clock = clock
        self._by_event = metrics_by_event()
        self._lock = threading.Lock()
        self._moved: set[tuple[str, str]] = set()
        self._requested: set[str] = set()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.evaluations = 0  # for tests and stats

    # -- triggers (any thread; cheap) -----------------------------------------------------------------
    def on_applied(self, events: Sequence[RecordedEvent], watermark: int) -> None:
        """A Runtime.applied_listeners entry: note the (tenant, metric) pairs these events move."""
        moved = {(e.tenant_id, m) for e in events for m in self._by_event.get(e.event_type, ())}
        if moved:
            with self._lock:
                self._moved |= moved
            self._wake.set()

    def request(self, rule_id: str) -> None:
        """Evaluate this rule soon (after create/update)."""
        with self._lock:
            self._requested.add(rule_id)
        self._wake.set()

    def wake(self) -> None:
        """Look for due rules now: the thread otherwise sleeps until the earliest ``next_check_at`` as
        measured by ``clock`` (a test that moves an injected clock forward calls this)."""
        self._wake.set()

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.run, args=(self._stop,), name="alert-evaluator", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)

    def run(self, stop: threading.Event) -> None:
        next_sweep = 0.0
        wait = 0.0
        while not stop.is_set():
            self._wake.wait(max(0.0, wait))
            self._wake.clear()
            if stop.is_set():
                break
            try:
                sweep = time.monotonic() >= next_sweep
                self.evaluate_pending(sweep=sweep)
                if sweep:
                    next_sweep = time.monotonic() + self.sweep_s
                wait = next_sweep - time.monotonic()
                due = self.store.next_due()
                if due is not None:
                    wait = min(wait, max(0.05, (due - self.clock()).total_seconds()))
            except Exception:
                log.exception("alert evaluation round failed")
                wait = min(self.sweep_s, 1.0)

    # -- evaluation -----------------------------------------------------------------------------------
    def evaluate_pending(self, sweep: bool = False) -> list[Evaluation]:
        """One round: requested rules, rules moved by applied events, due rules (all rules on a sweep)."""
        with self._lock:
            moved, self._moved = self._moved, set()
            ids, self._requested = set(self._requested), set()
        ids |= set(self.store.ids_for(moved))
        ids |= set(self.store.enabled_ids() if sweep else self.store.due_ids(self.clock()))
        out = []
        for rule_id in sorted(ids):
            try:
                ev = self.evaluate(rule_id)
            except Exception:
                log.exception("evaluating alert %s failed", rule_id)
                continue
            if ev is not None:
                out.append(ev)
        return out

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

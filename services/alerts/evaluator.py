"""The alert evaluator: one thread per API process, woken by the events that move a rule's metric.

Triggers: ``on_applied`` (a ``Runtime.applied_listeners`` entry, called in the projector thread) only
records which (tenant, metric) pairs moved — the metrics each event type moves come from the metric
contracts' ``moved_by`` — and wakes this thread; rules whose ``next_check_at`` is due (``for``,
``keep_firing_for`` and cooldown deadlines) are evaluated at that instant; and a sweep every
``sweep_s`` (``AGENTFLOW_ALERT_SWEEP_S``, 5 s) evaluates every enabled rule, so windows that slide
without events are seen too.

One evaluation = one transaction: lock the rule row (FOR UPDATE SKIP LOCKED; a rule somebody else is
evaluating is skipped), compute the metric, step the pure state machine (services/alerts/rules.py),
write the state, one history row per transition (unique on rule + seq) and the webhook delivery rows
of its notifications (``WebhookStore.add_delivery(conn=...)``, dedup key ``alert:<rule>:<seq>``), then
commit; only after the commit are the endpoints' drains enqueued (or the webhook sweep finds them).
So any number of evaluators (threads, API replicas) never notify one transition twice, and a crash
before the commit loses the transition and its notifications together (the next evaluation redoes
it).
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy.engine import Engine

from connectors.webhook_store import WebhookStore
from domain.events import RecordedEvent
from readmodels.metrics import METRICS, WINDOWS
from services.alerts.rules import Transition, change_pct, holds, next_check, step
from services.alerts.store import AlertRule, AlertStore

log = logging.getLogger("agentflow.alerts")

_ID_NS = uuid.UUID("0b7f3d7e-5a44-4c1f-9f8e-2f6f1c0a9e51")


class MetricFn(Protocol):
    def __call__(
        self, tenant_id: str, metric: str, window: str, currency: str | None, filters: dict[str, str],
        now: datetime,
    ) -> float: ...  # fmt: skip


def metrics_by_event() -> dict[str, tuple[str, ...]]:
    """Event type -> the metrics it moves (the contracts' ``moved_by``)."""
    out: dict[str, list[str]] = {}
    for name, m in METRICS.items():
        for et in m.source_events:
            out.setdefault(et, []).append(name)
    return {k: tuple(v) for k, v in out.items()}


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


def notification(rule: AlertRule, t: Transition, event_type: str) -> dict[str, Any]:
    """The webhook body of a transition: shaped like an event (type, id, tenant_id, data, occurred_at);
    ``id`` is stable per (rule, seq)."""
    data: dict[str, Any] = {
        "alert_id": rule.id, "name": rule.name, "description": rule.description,
        "state": t.to_state, "previous_state": t.from_state, "seq": t.seq,
        "metric": rule.metric, "window": rule.window, "filters": rule.filters, "currency": rule.currency,
        "condition": rule.condition, "threshold": rule.threshold, "value": t.value,
    }  # fmt: skip
    if rule.condition == "change_pct":
        data.update(direction=rule.direction, compare_to=rule.compare_to, baseline=t.baseline)
        if t.value is not None and t.baseline is not None:
            pct = change_pct(t.value, t.baseline)
            data["change_pct"] = round(pct, 6) if math.isfinite(pct) else None
    return {
        "type": event_type,
        "id": str(uuid.uuid5(_ID_NS, f"{rule.id}:{t.seq}")),
        "tenant_id": rule.tenant_id,
        "data": data,
        "occurred_at": t.at.isoformat(),
    }


class AlertEvaluator:
    name = "alerts"

    def __init__(
        self,
        engine: Engine,
        compute: MetricFn,
        webhook_store: WebhookStore | None = None,
        kick: Callable[[str], None] | None = None,
        sweep_s: float = 5.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.engine = engine
        self.store = AlertStore(engine)
        self.webhooks = webhook_store or WebhookStore(engine)
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
        """(value, baseline): the baseline of change_pct is the previous evaluation's value or the
        metric over the window just before this one."""
        value = float(
            self.compute(rule.tenant_id, rule.metric, rule.window, rule.currency, rule.filters, now)
        )
        baseline = None
        if rule.condition == "change_pct":
            if rule.compare_to == "previous_window":
                before = now - WINDOWS[rule.window]
                baseline = float(
                    self.compute(
                        rule.tenant_id, rule.metric, rule.window, rule.currency, rule.filters, before
                    )
                )
            else:
                baseline = rule.last_value
        return value, baseline

    def evaluate(self, rule_id: str) -> Evaluation | None:
        """Evaluate one rule in one transaction under its row lock; None when it is gone, disabled or
        locked by another evaluator."""
        kicks: set[str] = set()
        with self.engine.begin() as conn:
            rule = self.store.locked(conn, rule_id)
            if rule is None:
                return None
            now = self.clock()
            try:
                value, baseline = self.measure(rule, now)
            except Exception as exc:
                log.warning("alert %s: metric %s failed: %s", rule.id, rule.metric, exc)
                err = f"{type(exc).__name__}: {exc}"[:500]
                # next_check_at cleared: the sweep retries (no tight loop on a broken metric)
                self.store.save_state(conn, rule.id, rule.rule_state, None, now, err, None)
                return Evaluation(rule.id, None, None, None, rule.state, [], [], err)
            spec = rule.spec
            new_state, transitions = step(spec, rule.rule_state, value, baseline, now)
            queued: list[str] = []
            for t in transitions:
                sent: list[str] = []
                event_type = t.notification
                if event_type == "alert.resolved" and not spec.notify_resolved:
                    event_type = None
                if event_type is not None:
                    body = notification(rule, t, event_type)
                    for endpoint_id in self.store.targets(conn, rule, event_type):
                        d = self.webhooks.add_delivery(
                            endpoint_id, rule.tenant_id, body, "alert", event_type,
                            dedup_key=f"alert:{rule.id}:{t.seq}", conn=conn,
                        )  # fmt: skip
                        if d is not None:
                            sent.append(d.message_id)
                            kicks.add(endpoint_id)
                details = {"event_type": event_type} if event_type else {}
                self.store.add_history(conn, rule, t, sent, details)
                queued += sent
            decided = holds(spec, value, baseline)
            # undecided (no baseline yet): nothing can change with time alone, the next trigger decides
            due = next_check(spec, new_state) if decided is not None else None
            self.store.save_state(conn, rule.id, new_state, value, now, None, due)
        self.evaluations += 1
        if self.kick is not None:
            for endpoint_id in sorted(kicks):
                try:
                    self.kick(endpoint_id)
                except Exception:  # the webhook sweep enqueues it anyway
                    log.exception("enqueueing alert delivery to %s failed", endpoint_id)
        return Evaluation(rule.id, value, baseline, decided, new_state.state, transitions, queued)

"""Threshold alerts on metrics, the pure part: the rule language (conditions, durations, the rule
document and its validation), the state machine, what an evaluation decides and notifies -- and the
use cases behind ``/v1/alerts`` over the alert storage port (connectors/alert_store.py). The evaluator
thread that drives evaluations is services/alerts/evaluator.py.

The state machine: no clock, no database, no metric store.

States: ``inactive`` (never fired, or a pending condition cleared), ``pending`` (the condition holds,
``for_s`` has not elapsed or the cooldown is running), ``firing``, ``resolved`` (idle after a firing).

    inactive|resolved --holds--> pending --held for_s (and cooldown over)--> firing
    pending --no longer holds--> inactive
    firing --has not held for keep_firing_for_s--> resolved

``for_s == 0`` goes straight to firing. ``cooldown_s``: a rule never fires again (notifies) within
``cooldown_s`` of its previous firing; meanwhile it stays pending. Each transition gets the next
sequence number; (rule id, seq) is the idempotency key of the history row and its notifications.
A value of ``None`` (no data, or no baseline yet for ``change_pct``) leaves the state unchanged.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from readmodels.metrics import METRICS
from readmodels.windows import NOW, WINDOWS

CONDITIONS = ("above", "below", "change_pct")
DIRECTIONS = ("up", "down", "either")
COMPARE_TO = ("previous_evaluation", "previous_window")
STATES = ("inactive", "pending", "firing", "resolved")
IDLE = ("inactive", "resolved")

# the notification (webhook event type) of each transition target; pending/inactive notify nobody
NOTIFY_TYPES = {"firing": "alert.firing", "resolved": "alert.resolved"}


@dataclass(frozen=True, slots=True)
class RuleSpec:
    condition: str
    threshold: float
    direction: str = "either"
    for_s: float = 0.0
    keep_firing_for_s: float = 0.0
    cooldown_s: float = 0.0
    notify_resolved: bool = True


@dataclass(frozen=True, slots=True)
class RuleState:
    state: str = "inactive"
    state_since: datetime | None = None
    pending_since: datetime | None = None
    firing_since: datetime | None = None
    clear_since: datetime | None = None
    last_fired_at: datetime | None = None
    seq: int = 0


@dataclass(frozen=True, slots=True)
class Transition:
    seq: int
    from_state: str
    to_state: str
    at: datetime
    value: float | None
    baseline: float | None

    @property
    def notification(self) -> str | None:
        """The webhook event type to send, before the rule's notify_resolved is applied."""
        return NOTIFY_TYPES.get(self.to_state)


def change_pct(value: float, baseline: float) -> float:
    """Percent change from ``baseline``; from 0 to non-zero is ±inf, 0 to 0 is 0."""
    if baseline == 0:
        return 0.0 if value == 0 else math.copysign(math.inf, value)
    return (value - baseline) / abs(baseline) * 100.0


def holds(spec: RuleSpec, value: float | None, baseline: float | None = None) -> bool | None:
    """Whether the condition holds; None when it cannot be decided (no value, or no baseline)."""
    if value is None:
        return None
    if spec.condition == "above":
        return value > spec.threshold
    if spec.condition == "below":
        return value < spec.threshold
    if baseline is None:
        return None
    pct = change_pct(value, baseline)
    if spec.direction == "up":
        return pct >= spec.threshold
    if spec.direction == "down":
        return pct <= -spec.threshold
    return abs(pct) >= spec.threshold


def _elapsed(since: datetime | None, now: datetime, seconds: float) -> bool:
    return since is not None and now - since >= timedelta(seconds=seconds)


def _cooled(spec: RuleSpec, st: RuleState, now: datetime) -> bool:
    return (
        spec.cooldown_s <= 0 or st.last_fired_at is None or _elapsed(st.last_fired_at, now, spec.cooldown_s)
    )


def step(
    spec: RuleSpec, st: RuleState, value: float | None, baseline: float | None, now: datetime
) -> tuple[RuleState, list[Transition]]:
    """One evaluation: the new state and the transitions it made (at most two: idle -> pending -> firing
    never happens in one step unless ``for_s`` is 0, in which case it is idle -> firing)."""
    cond = holds(spec, value, baseline)
    if cond is None:
        return st, []
    out: list[Transition] = []

    def move(s: RuleState, to: str, **changes: object) -> RuleState:
        t = Transition(s.seq + 1, s.state, to, now, value, baseline)
        out.append(t)
        return replace(s, state=to, state_since=now, seq=t.seq, **changes)  # type: ignore[arg-type]

    if st.state in IDLE:
        if not cond:
            return st, out
        if spec.for_s <= 0 and _cooled(spec, st, now):
            st = move(st, "firing", pending_since=None, firing_since=now, clear_since=None, last_fired_at=now)
        else:
            st = move(st, "pending", pending_since=now)
        return st, out
    if st.state == "pending":
        if not cond:
            return move(st, "inactive", pending_since=None), out
        if _elapsed(st.pending_since, now, spec.for_s) and _cooled(spec, st, now):
            st = move(st, "firing", pending_since=None, firing_since=now, clear_since=None, last_fired_at=now)
        return st, out
    # firing
    if cond:
        return (replace(st, clear_since=None) if st.clear_since else st), out
    clear_since = st.clear_since or now
    if spec.keep_firing_for_s <= 0 or _elapsed(clear_since, now, spec.keep_firing_for_s):
        return move(st, "resolved", firing_since=None, clear_since=None), out
    return replace(st, clear_since=clear_since), out


def next_check(spec: RuleSpec, st: RuleState) -> datetime | None:
    """When the passage of time alone may change the state (the evaluator re-evaluates then)."""
    if st.state == "pending" and st.pending_since is not None:
        due = st.pending_since + timedelta(seconds=spec.for_s)
        if spec.cooldown_s > 0 and st.last_fired_at is not None:
            due = max(due, st.last_fired_at + timedelta(seconds=spec.cooldown_s))
        return due
    if st.state == "firing" and st.clear_since is not None:
        return st.clear_since + timedelta(seconds=spec.keep_firing_for_s)
    return None


class InvalidRule(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _number(raw: object, field: str, minimum: float | None = 0.0) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise InvalidRule(field, "must be a finite number")
    if minimum is not None and raw < minimum:
        raise InvalidRule(field, f"must be >= {minimum:g}")
    return float(raw)


def spec_from(doc: dict[str, object]) -> RuleSpec:
    """Validate the evaluation fields of a rule document (the API's validation of them)."""
    condition = doc.get("condition")
    if condition not in CONDITIONS:
        raise InvalidRule("condition", f"must be one of {', '.join(CONDITIONS)}")
    direction = doc.get("direction") or "either"
    if direction not in DIRECTIONS:
        raise InvalidRule("direction", f"must be one of {', '.join(DIRECTIONS)}")
    if "threshold" not in doc or doc["threshold"] is None:
        raise InvalidRule("threshold", "is required")
    threshold = _number(doc["threshold"], "threshold", None if condition != "change_pct" else 0.0)
    notify_resolved = doc.get("notify_resolved", True)
    if not isinstance(notify_resolved, bool):
        raise InvalidRule("notify_resolved", "must be a boolean")
    return RuleSpec(
        condition=str(condition),
        threshold=threshold,
        direction=str(direction),
        for_s=parse_duration(doc.get("for_s"), "for_s"),
        keep_firing_for_s=parse_duration(doc.get("keep_firing_for_s"), "keep_firing_for_s"),
        cooldown_s=parse_duration(doc.get("cooldown_s"), "cooldown_s"),
        notify_resolved=notify_resolved,
    )


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(raw: object, field: str) -> float:
    """Seconds from a number or a string like ``"90"``, ``"30s"``, ``"5m"``, ``"1h"``, ``"250ms"``."""
    if raw is None:
        return 0.0
    if isinstance(raw, str):
        text = raw.strip().lower()
        for suffix in sorted(_UNITS, key=len, reverse=True):
            if text.endswith(suffix):
                try:
                    return _number(float(text[: -len(suffix)]) * _UNITS[suffix], field)
                except ValueError as exc:
                    raise InvalidRule(field, f"{raw!r} is not a duration like 30s, 5m, 1h") from exc
        try:
            return _number(float(text), field)
        except ValueError as exc:
            raise InvalidRule(field, f"{raw!r} is not a duration like 30s, 5m, 1h") from exc
    return _number(raw, field)


# -- rules and their history (records) ------------------------------------------------------------

# the fields a client sets (create/replace/patch); the rest is evaluation state
RULE_FIELDS = (
    "name", "description", "metric", "window", "currency", "filters", "condition", "threshold", "direction",
    "compare_to", "for_s", "keep_firing_for_s", "cooldown_s", "notify_resolved", "endpoint_id", "enabled",
)  # fmt: skip
ALIASES = {"for": "for_s", "keep_firing_for": "keep_firing_for_s", "cooldown": "cooldown_s"}
DEFAULTS: dict[str, Any] = {
    "description": "", "currency": None, "filters": {}, "direction": "either",
    "compare_to": "previous_evaluation", "for_s": 0.0, "keep_firing_for_s": 0.0, "cooldown_s": 0.0,
    "notify_resolved": True, "endpoint_id": None, "enabled": True,
}  # fmt: skip


@dataclass(frozen=True)
class AlertRule:
    id: str
    tenant_id: str
    name: str
    description: str
    metric: str
    window: str
    currency: str | None
    filters: dict[str, str]
    condition: str
    threshold: float
    direction: str
    compare_to: str
    for_s: float
    keep_firing_for_s: float
    cooldown_s: float
    notify_resolved: bool
    endpoint_id: str | None
    enabled: bool
    state: str
    state_since: datetime | None
    pending_since: datetime | None
    firing_since: datetime | None
    clear_since: datetime | None
    last_fired_at: datetime | None
    last_value: float | None
    last_evaluated_at: datetime | None
    last_error: str | None
    seq: int
    next_check_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @property
    def spec(self) -> RuleSpec:
        return RuleSpec(
            self.condition, self.threshold, self.direction, self.for_s, self.keep_firing_for_s,
            self.cooldown_s, self.notify_resolved,
        )  # fmt: skip

    @property
    def rule_state(self) -> RuleState:
        return RuleState(
            self.state, self.state_since, self.pending_since, self.firing_since, self.clear_since,
            self.last_fired_at, self.seq,
        )  # fmt: skip

    def definition(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in RULE_FIELDS}


@dataclass(frozen=True)
class HistoryEntry:
    id: int
    rule_id: str
    seq: int
    from_state: str
    to_state: str
    at: datetime
    value: float | None
    baseline: float | None
    threshold: float
    notified: list[str]  # webhook-ids of the notifications
    details: dict[str, Any]


# -- what an evaluation decides ------------------------------------------------------------------


class MetricFn(Protocol):
    """A metric's value as ``GET /v1/metrics/{name}`` computes it, at ``now``."""

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


def measure(rule: AlertRule, metric: MetricFn, now: datetime) -> tuple[float, float | None]:
    """(value, baseline): the baseline of change_pct is the previous evaluation's value or the metric
    over the window just before this one."""
    value = float(metric(rule.tenant_id, rule.metric, rule.window, rule.currency, rule.filters, now))
    baseline = None
    if rule.condition == "change_pct":
        if rule.compare_to == "previous_window":
            before = now - WINDOWS[rule.window]
            baseline = float(
                metric(rule.tenant_id, rule.metric, rule.window, rule.currency, rule.filters, before)
            )
        else:
            baseline = rule.last_value
    return value, baseline


_ID_NS = uuid.UUID("0b7f3d7e-5a44-4c1f-9f8e-2f6f1c0a9e51")


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


@dataclass(frozen=True)
class Notice:
    """A transition and the notification it sends (``event_type`` None: nobody is notified).
    ``dedup_key`` (``alert:<rule>:<seq>``) makes its deliveries once per transition, ever."""

    transition: Transition
    event_type: str | None
    body: dict[str, Any] | None
    dedup_key: str


@dataclass(frozen=True)
class Decision:
    state: RuleState
    notices: list[Notice]
    holds: bool | None
    next_check_at: datetime | None  # when time alone may change the state (None: the next trigger)


def decide(rule: AlertRule, value: float | None, baseline: float | None, now: datetime) -> Decision:
    """One evaluation of ``rule`` with the measured value: the new state, the transitions with their
    notifications (``alert.resolved`` only when the rule notifies resolutions), and the next deadline."""
    spec = rule.spec
    new_state, transitions = step(spec, rule.rule_state, value, baseline, now)
    notices = []
    for t in transitions:
        event_type = t.notification
        if event_type == "alert.resolved" and not spec.notify_resolved:
            event_type = None
        body = notification(rule, t, event_type) if event_type else None
        notices.append(Notice(t, event_type, body, f"alert:{rule.id}:{t.seq}"))
    decided = holds(spec, value, baseline)
    # undecided (no baseline yet): nothing can change with time alone, the next trigger decides
    due = next_check(spec, new_state) if decided is not None else None
    return Decision(new_state, notices, decided, due)


# -- the rule document (create, replace, patch) ---------------------------------------------------


class InvalidAlert(ValueError):
    """A refused rule document (HTTP 422) with a machine-readable code and details."""

    def __init__(self, message: str, code: str = "validation_failed", details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.details = details


def _invalid(field: str, message: str) -> InvalidAlert:
    return InvalidAlert(f"{field}: {message}", "validation_failed", [{"field": field, "message": message}])


def definition(
    given_fields: dict[str, Any], base: dict[str, Any] | None, endpoint_exists: Callable[[str], bool]
) -> dict[str, Any]:
    """Validate a rule document: ``base`` None for create/PUT (defaults fill the gaps), the current
    definition for PATCH. Durations (``for``, ``keep_firing_for``, ``cooldown``) are seconds or
    strings like ``30s``/``5m``; stored as ``*_s`` seconds. Raises InvalidAlert."""
    given: dict[str, Any] = {}
    for key, value in given_fields.items():
        field = ALIASES.get(key, key)
        if field not in RULE_FIELDS:
            raise _invalid(key, f"unknown field (allowed: {', '.join(sorted([*RULE_FIELDS, *ALIASES]))})")
        given[field] = value
    doc = {**(base if base is not None else DEFAULTS), **given}
    name = doc.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _invalid("name", "a non-empty string is required")
    doc["name"] = name.strip()
    if not isinstance(doc.get("description") or "", str):
        raise _invalid("description", "must be a string")
    doc["description"] = doc.get("description") or ""
    metric = METRICS.get(str(doc.get("metric")))
    if metric is None:
        raise InvalidAlert(
            f"unknown metric {doc.get('metric')!r}", "unknown_metric", {"available": sorted(METRICS)}
        )
    window = doc.get("window") or metric.windows[0]
    if window not in metric.windows:
        offered = ", ".join(metric.windows)
        raise InvalidAlert(f"metric {metric.name} offers windows {offered}", "invalid_window",
                           {"available_windows": list(metric.windows)})  # fmt: skip
    doc["window"] = window
    filters = doc.get("filters") or {}
    if not isinstance(filters, dict) or not all(isinstance(v, str) and v for v in filters.values()):
        raise _invalid("filters", "must be an object of dimension -> non-empty string")
    currency = doc.get("currency")
    if currency is not None:
        if not isinstance(currency, str) or len(currency.strip()) != 3:
            raise _invalid("currency", "must be an ISO 4217 code")
        currency = currency.strip().upper()
        if not metric.money:
            if "currency" not in metric.dimensions:
                raise _invalid("currency", f"metric {metric.name} is not a money metric and has no currency")
            filters = {**filters, "currency": currency}  # a currency dimension filter
            currency = None
    for dim in filters:
        if dim not in metric.dimensions or (dim == "currency" and metric.money):
            raise InvalidAlert(
                f"metric {metric.name} offers dimensions {', '.join(metric.dimensions) or 'none'}"
                + (" (use currency for a money metric's currency)" if metric.money else ""),
                "invalid_dimension", {"dimensions": list(metric.dimensions)},
            )  # fmt: skip
    doc["filters"] = {k: (v.upper() if k == "currency" else v) for k, v in sorted(filters.items())}
    doc["currency"] = currency
    try:
        for f in ("for_s", "keep_firing_for_s", "cooldown_s"):
            doc[f] = parse_duration(doc.get(f), f)
        spec_from(doc)
    except InvalidRule as exc:
        raise _invalid(exc.field, exc.message) from exc
    doc["threshold"] = float(doc["threshold"])
    doc["direction"] = doc.get("direction") or "either"
    compare_to = doc.get("compare_to") or "previous_evaluation"
    if compare_to not in COMPARE_TO:
        raise _invalid("compare_to", f"must be one of {', '.join(COMPARE_TO)}")
    if compare_to == "previous_window" and window == NOW:
        raise _invalid("compare_to", f"{metric.name} is a snapshot metric: compare to previous_evaluation")
    doc["compare_to"] = compare_to
    for flag in ("enabled", "notify_resolved"):
        if not isinstance(doc.get(flag), bool):
            raise _invalid(flag, "must be a boolean")
    endpoint_id = doc.get("endpoint_id")
    if endpoint_id is not None and (not isinstance(endpoint_id, str) or not endpoint_exists(endpoint_id)):
        raise _invalid("endpoint_id", f"webhook {endpoint_id!r} not found")
    return {f: doc.get(f) for f in RULE_FIELDS}


# -- the use cases of /v1/alerts ------------------------------------------------------------------


class AlertStorePort(Protocol):
    """Rules, their history, and queueing their notifications (connectors/alert_store.py)."""

    def create(self, tenant_id: str, definition: dict[str, Any]) -> AlertRule: ...

    def get(self, tenant_id: str | None, rule_id: str) -> AlertRule | None: ...

    def list_rules(self, tenant_id: str, state: str | None = None) -> list[AlertRule]: ...

    def update(self, tenant_id: str, rule_id: str, definition: dict[str, Any]) -> AlertRule | None: ...

    def delete(self, tenant_id: str, rule_id: str) -> bool: ...

    def history(
        self, tenant_id: str, rule_id: str, limit: int = 100, before_id: int | None = None
    ) -> list[HistoryEntry]: ...

    def queue_notification(
        self, rule: AlertRule, event_type: str, payload: dict[str, Any], kind: str
    ) -> list[Any]:
        """Queue ``payload`` to the rule's targets in one transaction; the deliveries created
        (readmodels.webhooks.Delivery)."""
        ...


class AlertNotFound(Exception):
    def __init__(self, rule_id: str) -> None:
        super().__init__(f"alert {rule_id} not found")


MAX_HISTORY = 500


@dataclass(frozen=True)
class TestNotification:
    deliveries: list[Any]  # readmodels.webhooks.Delivery
    payload: dict[str, Any]
    evaluation: dict[str, Any]  # value, baseline, holds, error


@dataclass(frozen=True)
class HistoryPage:
    rule: AlertRule
    entries: list[HistoryEntry]
    next_before: int | None


class AlertRules:
    """A tenant's alert rules: define, change, test, read their history. ``endpoint_exists(tenant,
    id)`` checks a notification target; ``metric`` measures a rule for its test; ``request_evaluation``
    asks this process's evaluator (when it runs one) to evaluate a changed rule soon; ``kick`` enqueues
    a queued notification's drain when this process runs the worker fleet."""

    def __init__(
        self,
        store: AlertStorePort,
        endpoint_exists: Callable[[str, str], bool],
        metric: MetricFn,
        request_evaluation: Callable[[str], None],
        kick: Callable[[str], None],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.endpoint_exists = endpoint_exists
        self.metric = metric
        self.request_evaluation = request_evaluation
        self.kick = kick
        self.clock = clock

    def _definition(
        self, tenant_id: str, given: dict[str, Any], base: dict[str, Any] | None
    ) -> dict[str, Any]:
        return definition(given, base, lambda endpoint_id: self.endpoint_exists(tenant_id, endpoint_id))

    def create(self, tenant_id: str, given: dict[str, Any]) -> AlertRule:
        rule = self.store.create(tenant_id, self._definition(tenant_id, given, None))
        self.request_evaluation(rule.id)
        return rule

    def list(self, tenant_id: str, state: str | None = None) -> list[AlertRule]:
        if state and state not in STATES:
            raise _invalid("state", f"must be one of {', '.join(STATES)}")
        return self.store.list_rules(tenant_id, state)

    def get(self, tenant_id: str, rule_id: str) -> AlertRule:
        rule = self.store.get(tenant_id, rule_id)
        if rule is None:
            raise AlertNotFound(rule_id)
        return rule

    def update(self, tenant_id: str, rule_id: str, given: dict[str, Any], partial: bool) -> AlertRule:
        """PATCH (``partial``): change some fields, the evaluation state is kept (``enabled: false``
        resets it, silently); PUT: replace the definition (omitted optional fields take defaults)."""
        current = self.get(tenant_id, rule_id)
        doc = self._definition(tenant_id, given, current.definition() if partial else None)
        rule = self.store.update(tenant_id, rule_id, doc)
        if rule is None:  # pragma: no cover - deleted meanwhile
            raise AlertNotFound(rule_id)
        self.request_evaluation(rule.id)
        return rule

    def delete(self, tenant_id: str, rule_id: str) -> None:
        if not self.store.delete(tenant_id, rule_id):
            raise AlertNotFound(rule_id)

    def send_test(self, tenant_id: str, rule_id: str) -> TestNotification:
        """Measure the rule now (no state change) and queue an ``alert.test`` notification to its
        targets through the normal webhook path. InvalidAlert (``no_endpoint``) when nobody gets it."""
        rule = self.get(tenant_id, rule_id)
        now = self.clock()
        evaluation: dict[str, Any] = {"value": None, "holds": None, "error": None}
        try:
            value = self.metric(rule.tenant_id, rule.metric, rule.window, rule.currency, rule.filters, now)
            baseline = rule.last_value if rule.condition == "change_pct" else None
            evaluation.update(value=value, baseline=baseline, holds=holds(rule.spec, value, baseline))
        except Exception as exc:  # the test still shows the delivery path works
            evaluation["error"] = f"{type(exc).__name__}: {exc}"[:500]
        payload = {
            "type": "alert.test", "id": str(uuid.uuid4()), "tenant_id": rule.tenant_id,
            "data": {"alert_id": rule.id, "name": rule.name, "state": rule.state, "metric": rule.metric,
                     "window": rule.window, "filters": rule.filters, "currency": rule.currency,
                     "condition": rule.condition, "threshold": rule.threshold, **evaluation},
            "occurred_at": now.isoformat(),
        }  # fmt: skip
        deliveries = self.store.queue_notification(rule, "alert.test", payload, "alert")
        for endpoint_id in _endpoint_ids(deliveries):
            self.kick(endpoint_id)
        if not deliveries:
            raise InvalidAlert(
                "no webhook endpoint receives this alert's notifications "
                "(set endpoint_id, or subscribe an endpoint to alert.*)",
                "no_endpoint",
            )
        return TestNotification(deliveries, payload, evaluation)

    def history(
        self, tenant_id: str, rule_id: str, limit: int = 100, before: int | None = None
    ) -> HistoryPage:
        """Transitions newest first; ``before`` is the previous page's ``next_before``."""
        rule = self.get(tenant_id, rule_id)
        limit = min(MAX_HISTORY, max(1, limit))
        rows = self.store.history(tenant_id, rule.id, limit, before)
        return HistoryPage(rule, rows, rows[-1].id if len(rows) == limit else None)


def _endpoint_ids(deliveries: Iterable[Any]) -> list[str]:
    return list(dict.fromkeys(d.endpoint_id for d in deliveries))

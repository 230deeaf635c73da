"""The alert state machine, pure: no clock, no database, no metric store.

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
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

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

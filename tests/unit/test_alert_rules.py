"""The alert state machine (readmodels/alerts.py): pure, driven by an explicit clock."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from readmodels.alerts import (
    InvalidRule,
    RuleSpec,
    RuleState,
    change_pct,
    holds,
    next_check,
    parse_duration,
    spec_from,
    step,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def run(spec: RuleSpec, values: list[tuple[float, float | None]], st: RuleState | None = None) -> list[str]:
    """Feed (time, value) pairs; return the transitions as 'from>to@t'."""
    st = st or RuleState()
    out = []
    for t, v in values:
        st, trs = step(spec, st, v, None, at(t))
        out += [f"{x.from_state}>{x.to_state}@{t:g}" for x in trs]
    return out


def test_conditions() -> None:
    assert holds(RuleSpec("above", 10), 11) and not holds(RuleSpec("above", 10), 10)
    assert holds(RuleSpec("below", 10), 9) and not holds(RuleSpec("below", 10), 10)
    assert holds(RuleSpec("above", 10), None) is None
    up, down, either = (
        RuleSpec("change_pct", 50, "up"),
        RuleSpec("change_pct", 50, "down"),
        RuleSpec("change_pct", 50),
    )
    assert holds(up, 150, 100) and not holds(up, 50, 100)
    assert holds(down, 50, 100) and not holds(down, 150, 100)
    assert holds(either, 50, 100) and holds(either, 150, 100) and not holds(either, 120, 100)
    assert holds(either, 5, None) is None  # no baseline yet: undecided
    assert change_pct(5, 0) == math.inf and change_pct(0, 0) == 0 and change_pct(-2, -4) == 50
    assert holds(up, 1, 0) and not holds(down, 1, 0)


def test_pending_then_firing_after_for_then_resolved() -> None:
    spec = RuleSpec("above", 10, for_s=30)
    assert run(spec, [(0, 5), (10, 20), (25, 20), (40, 20), (50, 20), (60, 3)]) == [
        "inactive>pending@10",
        "pending>firing@40",
        "firing>resolved@60",
    ]


def test_pending_that_clears_goes_back_to_inactive_without_firing() -> None:
    spec = RuleSpec("above", 10, for_s=30)
    assert run(spec, [(0, 20), (10, 5), (20, 20), (45, 20), (50, 20)]) == [
        "inactive>pending@0",
        "pending>inactive@10",
        "inactive>pending@20",
        "pending>firing@50",  # the `for` clock restarted at 20
    ]


def test_for_zero_fires_at_once() -> None:
    assert run(RuleSpec("below", 1), [(0, 0), (1, 0), (2, 5)]) == ["inactive>firing@0", "firing>resolved@2"]


def test_keep_firing_for_holds_firing_through_short_dips() -> None:
    spec = RuleSpec("above", 10, keep_firing_for_s=20)
    assert run(spec, [(0, 20), (5, 1), (15, 20), (20, 1), (30, 1), (41, 1)]) == [
        "inactive>firing@0",
        "firing>resolved@41",  # false since 20 (the dip at 5 was interrupted at 15)
    ]


def test_cooldown_delays_refiring() -> None:
    spec = RuleSpec("above", 10, cooldown_s=60)
    out = run(spec, [(0, 20), (10, 1), (20, 20), (50, 20), (60, 20), (70, 1)])
    assert out == [
        "inactive>firing@0",
        "firing>resolved@10",
        "resolved>pending@20",  # within the cooldown: pending, no second notification
        "pending>firing@60",
        "firing>resolved@70",
    ]


def test_sequence_numbers_and_next_check() -> None:
    spec = RuleSpec("above", 10, for_s=30, keep_firing_for_s=10, cooldown_s=100)
    st = RuleState()
    st, trs = step(spec, st, 20, None, at(0))
    assert [t.seq for t in trs] == [1] and st.seq == 1
    assert next_check(spec, st) == at(30)
    st, trs = step(spec, st, 20, None, at(30))
    assert st.state == "firing" and trs[0].seq == 2 and trs[0].notification == "alert.firing"
    assert next_check(spec, st) is None
    st, trs = step(spec, st, 1, None, at(31))
    assert not trs and st.state == "firing" and next_check(spec, st) == at(41)
    st, trs = step(spec, st, 1, None, at(41))
    assert st.state == "resolved" and trs[0].seq == 3 and trs[0].notification == "alert.resolved"
    st, trs = step(spec, st, 20, None, at(50))
    assert st.state == "pending"
    assert next_check(spec, st) == at(130)  # the cooldown (from the firing at 30) outlasts `for`


def test_undecided_value_changes_nothing() -> None:
    spec = RuleSpec("change_pct", 10)
    st, trs = step(spec, RuleState(), 5.0, None, at(0))
    assert st == RuleState() and trs == []


def test_change_pct_against_a_baseline() -> None:
    spec = RuleSpec("change_pct", 50, "down")
    st, trs = step(spec, RuleState(), 40, 100, at(0))
    assert st.state == "firing" and trs[0].baseline == 100 and trs[0].value == 40


def test_spec_validation_and_durations() -> None:
    spec = spec_from({"condition": "above", "threshold": 3, "for_s": "2m", "cooldown_s": "1h"})
    assert spec.for_s == 120 and spec.cooldown_s == 3600 and spec.keep_firing_for_s == 0
    assert (
        parse_duration("250ms", "x") == 0.25 and parse_duration(7, "x") == 7 and parse_duration("9", "x") == 9
    )
    for bad in (
        {"condition": "sideways", "threshold": 1},
        {"condition": "above"},
        {"condition": "above", "threshold": "x"},
        {"condition": "above", "threshold": 1, "for_s": -1},
        {"condition": "above", "threshold": 1, "for_s": "5 parsecs"},
        {"condition": "change_pct", "threshold": -5},
        {"condition": "change_pct", "threshold": 5, "direction": "left"},
        {"condition": "above", "threshold": 1, "notify_resolved": "yes"},
    ):
        with pytest.raises(InvalidRule):
            spec_from(bad)  # type: ignore[arg-type]

"""The dead-letter status machine and reason classes (connectors/dead_letters.py)."""

from __future__ import annotations

import pytest

from connectors.dead_letters import (
    DISMISSED,
    FAILED,
    FINAL,
    REPLAY_PENDING,
    REPLAYED,
    STATUSES,
    TRANSITIONS,
    can_transition,
    reason_class,
)


@pytest.mark.parametrize(
    ("current", "target", "allowed"),
    [
        (FAILED, REPLAY_PENDING, True),
        (FAILED, DISMISSED, True),
        (FAILED, REPLAYED, False),  # a replay is claimed (replay_pending) before it appends
        (REPLAY_PENDING, REPLAYED, True),
        (REPLAY_PENDING, FAILED, True),  # the append failed
        (REPLAY_PENDING, REPLAY_PENDING, True),  # re-claim after a crash (the append is idempotent)
        (REPLAY_PENDING, DISMISSED, False),  # an append may be in flight
        (REPLAYED, REPLAY_PENDING, False),
        (REPLAYED, FAILED, False),
        (REPLAYED, DISMISSED, False),
        (DISMISSED, REPLAY_PENDING, False),
        (DISMISSED, FAILED, False),
    ],
)
def test_transitions(current: str, target: str, allowed: bool) -> None:
    assert can_transition(current, target) is allowed


def test_final_statuses_have_no_way_out_and_every_status_is_reachable() -> None:
    for status in FINAL:
        assert not any(status in sources for sources in TRANSITIONS.values())
    reachable = {FAILED}
    frontier = [FAILED]
    while frontier:
        s = frontier.pop()
        for target, sources in TRANSITIONS.items():
            if s in sources and target not in reachable:
                reachable.add(target)
                frontier.append(target)
    assert reachable == set(STATUSES)
    assert can_transition("nonsense", FAILED) is False
    assert can_transition(FAILED, "nonsense") is False


@pytest.mark.parametrize(
    ("stage", "reason", "cls"),
    [
        ("parse", "not JSON", "parse"),
        ("validate", "total_minor 999999 != sum of lines 1500", "total_mismatch"),
        ("validate", "unknown event type 'Nope'", "unknown_event_type"),
        ("validate", "missing fields ['lines']; total_minor None != sum of lines 0", "schema_fields"),
        ("validate", "line 1: quantity 0 outside 1..1000", "order_lines"),
        ("validate", "quantity 0 outside 1..1000", "range"),
        ("validate", "unknown currency 'XXX'", "currency"),
        ("validate", "order_id 'A' != stream id 'B'", "stream_id"),
        ("validate", "OrderPlaced schema_version 1 != current 2", "schema_version"),
        ("project", "ZeroDivisionError", "other"),
    ],
)
def test_reason_class(stage: str, reason: str, cls: str) -> None:
    assert reason_class(stage, reason) == cls

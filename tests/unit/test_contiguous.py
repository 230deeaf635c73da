"""Contiguity of applied positions: gaps, out-of-order arrival, dead letters, duplicates, restarts."""

from __future__ import annotations

import random

from connectors.contiguous import Contiguity


def test_in_order_applies_move_the_watermark_once_observed() -> None:
    c = Contiguity()
    c.applied([1, 2, 3])
    assert c.advance() == 0  # the store tail has not vouched for anything yet
    assert c.ahead == 3
    c.observed([1, 2, 3], tail_watermark=3)
    assert c.advance() == 3
    assert (c.ahead, c.expected) == (0, 0)


def test_observed_before_applied_holds_the_watermark_at_the_first_missing() -> None:
    c = Contiguity()
    c.observed([1, 2, 3, 4], tail_watermark=4)
    assert c.advance() == 0
    c.applied([2, 4])
    assert c.advance() == 0
    c.applied([1])
    assert c.advance() == 2
    c.applied([3])
    assert c.advance() == 4


def test_gaps_from_rolled_back_transactions_are_skipped() -> None:
    c = Contiguity()
    c.observed([1, 2, 5, 7], tail_watermark=8)  # 3, 4, 6, 8 never committed
    c.applied([1, 2, 5])
    assert c.advance() == 6
    c.applied([7])
    assert c.advance() == 8


def test_tail_watermark_caps_the_watermark() -> None:
    """Commit order: 3 is visible, but a transaction holding 2 may still commit."""
    c = Contiguity()
    c.observed([1, 3], tail_watermark=1)
    c.applied([1, 3])
    assert c.advance() == 1
    c.observed([2], tail_watermark=3)
    assert c.advance() == 1
    c.applied([2])
    assert c.advance() == 3


def test_dead_lettered_positions_count_as_applied() -> None:
    c = Contiguity()
    c.observed([1, 2, 3], tail_watermark=3)
    c.applied([1, 3])  # serving
    c.applied([2])  # dead letter
    assert c.advance() == 3


def test_duplicates_are_idempotent() -> None:
    c = Contiguity()
    c.applied([1, 1, 2])
    c.observed([1, 2, 3], tail_watermark=3)
    c.observed([2], tail_watermark=3)  # a repeated observation must not re-expect an applied position
    c.applied([2, 1])
    assert c.advance() == 2
    assert c.expected == 1
    c.applied([3, 3])
    assert c.advance() == 3
    c.applied([1, 2, 3])  # redelivered after the watermark passed them
    assert (c.advance(), c.ahead, c.expected) == (3, 0, 0)


def test_watermark_never_moves_backwards() -> None:
    c = Contiguity(watermark=10)
    c.observed([], tail_watermark=5)
    assert c.advance() == 10
    c.applied([4, 9, 10])
    assert (c.advance(), c.ahead) == (10, 0)


def test_restart_from_a_saved_watermark() -> None:
    """After a restart the tail yields only positions > the saved watermark and Kafka redelivers
    (some) messages at or below it, plus everything above."""
    c = Contiguity(watermark=5)
    c.applied([3, 4, 5, 6, 8])  # redelivered; 3..5 are below the floor
    assert c.ahead == 2
    c.observed([6, 7, 8], tail_watermark=9)
    assert c.advance() == 6
    c.applied([7])
    assert c.advance() == 9


def test_random_interleavings_match_a_brute_force_watermark() -> None:
    rnd = random.Random(3)
    for _ in range(200):
        n = rnd.randint(1, 60)
        existing = sorted(rnd.sample(range(1, n + 20), n))
        # the tail yields in commit order: positions shuffled a little, watermark = max prefix
        commit_order = sorted(existing, key=lambda p: p + rnd.randint(0, 5))
        arrivals = existing + rnd.sample(existing, min(5, n))  # duplicates
        rnd.shuffle(arrivals)
        c = Contiguity()
        applied: set[int] = set()
        observed: list[int] = []
        tail_i = 0
        arr_i = 0
        while tail_i < len(commit_order) or arr_i < len(arrivals):
            if arr_i < len(arrivals) and (tail_i >= len(commit_order) or rnd.random() < 0.5):
                k = rnd.randint(1, 4)
                batch = arrivals[arr_i : arr_i + k]
                arr_i += k
                c.applied(batch)
                applied.update(batch)
            else:
                k = rnd.randint(1, 4)
                batch = commit_order[tail_i : tail_i + k]
                tail_i += k
                observed.extend(batch)
                # T: every existing position <= T observed; before the end, below the smallest unseen
                unseen = [p for p in existing if p not in observed]
                tail_wm = (min(unseen) - 1) if unseen else n + 20
                c.observed(batch, tail_wm)
            wm = c.advance()
            # brute force: every existing position <= wm applied, and wm <= T
            assert all(p in applied for p in existing if p <= wm), (existing, wm)
        assert c.advance() == n + 20
        assert (c.expected, c.ahead) == (0, 0)

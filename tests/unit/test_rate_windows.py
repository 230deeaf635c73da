"""MemoryWindows: the window-counter contract, and the sliding estimate across windows on a manual clock."""

from __future__ import annotations

import pytest
from port_contracts.rate_windows import RateWindowsContract

from connectors.rate_windows import MemoryWindows


class TestMemoryWindowsContract(RateWindowsContract):
    @pytest.fixture()
    def windows(self) -> MemoryWindows:
        return MemoryWindows()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_previous_window_slides_out() -> None:
    clock = Clock(600.0)  # the start of a 60 s window
    windows = MemoryWindows(clock)
    assert sum(windows.hit("k", 10, 60).allowed for _ in range(12)) == 10
    clock.now = 660.0 + 30.0  # half-way through the next window: 10 * 0.5 still count
    allowed = [windows.hit("k", 10, 60) for _ in range(7)]
    assert [a.allowed for a in allowed] == [True] * 5 + [False] * 2
    assert (allowed[0].previous, allowed[-1].current) == (10, 5)
    clock.now = 780.0  # two windows on: nothing counts any more
    assert windows.hit("k", 10, 60).current == 1
    assert windows.hit("k", 10, 60).previous == 0


def test_idle_buckets_are_swept() -> None:
    clock = Clock(0.0)
    windows = MemoryWindows(clock)
    for i in range(100):
        windows.hit(f"addr-{i}", 5, 60)
    clock.now = 200.0
    for _ in range(MemoryWindows.SWEEP_EVERY):
        windows.hit("busy", 10**9, 60)
    assert set(windows._counts) == {"busy"}

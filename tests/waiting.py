"""Waiting on signals instead of sleeping: the one polling helper every test uses.

A test never sleeps to let something happen. It polls for the outcome it expects with a generous
deadline (a busy 2-core machine may be many times slower than a quiet one: the deadline bounds a
hang, it is not a latency assertion), or waits on an explicit signal (a barrier, an event, the
server's own positions and watermarks). "Nothing more arrives" is checked by waiting for a positive
marker that must arrive after it (e.g. a later event), never by letting time pass.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

DEFAULT_TIMEOUT = 60.0


def eventually(
    fn: Callable[[], T | None],
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = 0.05,
    what: str | Callable[[], str] = "",
) -> T:
    """Call ``fn`` until it returns something truthy and return that; fail after ``timeout`` seconds.

    ``fn`` may also raise ``AssertionError`` while the condition does not hold yet: the last one is
    reported when the deadline passes. ``what`` (a string, or a callable for costly diagnostics)
    names the condition in the failure message.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    pause = threading.Event()  # wait() on an event that is never set: a poll interval, not a sync point
    while True:
        try:
            last = fn()
            if last:
                return last  # type: ignore[return-value]
        except AssertionError as exc:
            last = exc
        if time.monotonic() >= deadline:
            detail = what() if callable(what) else what
            raise AssertionError(f"not met after {timeout:.0f}s: {detail} (last: {last!r})")
        pause.wait(interval)

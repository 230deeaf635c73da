"""Keep the engines of ``agentflow up --distributed`` running.

A thread polls each engine every half second. Polling reaps an engine that exited (no zombie stays
behind); the supervisor says which one died and how, and starts it again after a backoff that doubles
per consecutive failure (1 s, 2 s, 4 s ... 30 s) and resets once the engine has run for a minute.

``agentflow restart ENGINE`` asks for a restart through control files in ``run_dir``: it creates
``restart-ENGINE.request``; the supervisor removes it (picked up), stops the engine (SIGTERM, then
SIGKILL) and starts it again at once, then writes ``restart-ENGINE.done`` (``ok`` or ``failed: ...``).
Files are the whole protocol: no socket, no signal handler; a request left over from a previous run
is removed when supervision starts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

ENGINES = ("kafka", "connect", "flink")


def request_file(run_dir: Path, engine: str) -> Path:
    return run_dir / f"restart-{engine}.request"


def done_file(run_dir: Path, engine: str) -> Path:
    return run_dir / f"restart-{engine}.done"


@dataclass
class Backoff:
    """Delay before the next restart: doubles per consecutive failure, resets after a stable run."""

    initial: float = 1.0
    maximum: float = 30.0
    stable_after: float = 60.0
    failures: int = 0
    started_at: float | None = None

    def next_delay(self, now: float) -> float:
        if self.started_at is not None and now - self.started_at >= self.stable_after:
            self.failures = 0
        delay = min(self.maximum, self.initial * 2**self.failures)
        self.failures += 1
        return delay

    def started(self, now: float) -> None:
        self.started_at = now


@dataclass
class Engine:
    """One supervised engine. ``poll`` returns None while it runs, else its exit detail (and reaps it);
    ``stop`` and ``start`` are the engine's own (``start`` returns once it serves again)."""

    name: str
    poll: Callable[[], str | None]
    stop: Callable[[], None]
    start: Callable[[], None]
    backoff: Backoff = field(default_factory=Backoff)
    start_failed: bool = False  # its last start raised: retried even if nothing is left to poll


class Supervisor:
    def __init__(
        self,
        engines: list[Engine],
        run_dir: Path,
        say: Callable[[str], None],
        interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engines = engines
        self.run_dir = run_dir
        self.say = say
        self.interval = interval
        self.clock = clock
        self.restarts: dict[str, int] = {e.name: 0 for e in engines}
        self.busy: str | None = None  # the engine being restarted right now
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        for e in self.engines:  # a request left from before this run asks nothing of it
            request_file(self.run_dir, e.name).unlink(missing_ok=True)
            e.backoff.started(self.clock())
        self._thread = threading.Thread(target=self._run, name="engine-supervisor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 0.5) -> None:
        """Stop supervising. A start under way is not waited for: the caller stops the engines next,
        which ends it (its engine exits, the start raises in this daemon thread)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for engine in self.engines:
                if self._stop.is_set():
                    return
                try:
                    self.check(engine)
                except Exception:  # the supervisor itself must never die
                    log.exception("supervising %s failed", engine.name)

    def check(self, engine: Engine) -> None:
        """One turn for one engine: a requested restart, or healing one that died."""
        request = request_file(self.run_dir, engine.name)
        if request.exists():
            request.unlink(missing_ok=True)
            self.say(f"restarting {engine.name} (requested) ...")
            self.busy = engine.name
            try:
                engine.stop()
                outcome = self._start(engine)
            finally:
                self.busy = None
            done_file(self.run_dir, engine.name).write_text(outcome)
            return
        died = "its last start failed" if engine.start_failed else engine.poll()
        if died is None:
            return
        delay = engine.backoff.next_delay(self.clock())
        attempt = engine.backoff.failures
        self.say(f"{engine.name} died ({died}); restarting in {delay:.0f}s (attempt {attempt})")
        self.busy = engine.name
        try:
            if self._stop.wait(delay):
                return
            engine.stop()  # clears what is left of it (pid file, the rest of its process group)
            self._start(engine)
        finally:
            self.busy = None

    def _start(self, engine: Engine) -> str:
        """Start the engine; ``ok`` or ``failed: <why>``. A failed start is retried: poll() reports
        the engine dead next turn and the backoff grows."""
        t0 = self.clock()
        if self._stop.is_set():
            return "failed: agentflow is stopping"
        try:
            engine.start()
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.say(f"starting {engine.name} failed: {first}")
            engine.start_failed = True
            return f"failed: {first}"
        engine.start_failed = False
        self.restarts[engine.name] += 1
        engine.backoff.started(self.clock())
        self.say(f"{engine.name} restarted in {self.clock() - t0:.1f}s")
        return "ok"

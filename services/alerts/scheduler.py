"""What enqueues alert evaluations: one scheduler thread per serving process, one of them leading.

- ``request(rule_id)`` (after a rule is created or updated): enqueued by whichever process took the
  request.
- Applied events (``on_applied``, a ``Runtime.applied_listeners`` entry called in the projector
  thread): the leader notes which (tenant, metric) pairs moved -- the metrics each event type moves
  come from the metric contracts' ``moved_by`` -- and enqueues the enabled rules on those pairs, with
  the position that moved them.
- The schedule, leader only: rules whose ``next_check_at`` is due (``for``, ``keep_firing_for`` and
  cooldown deadlines) at that instant, and every enabled rule every ``sweep_s``
  (``AGENTFLOW_ALERT_SWEEP_S``, 5 s), so windows that slide without events are seen too.

The leader holds the ``alert-scheduler`` advisory lock (connectors/advisory_lock.py); when it dies its
session ends, the lock frees, and another process's scheduler takes over within a second. Every
process runs the same code; none of them evaluates: the ``evaluate_alert`` actor does
(services/alerts/actors.py), in whichever worker takes the message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from connectors.advisory_lock import SessionLock
from connectors.alert_store import AlertStore
from domain.events import RecordedEvent
from readmodels.alerts import metrics_by_event

log = logging.getLogger("agentflow.alerts")

LOCK = "alert-scheduler"
LEADERSHIP_CHECK_S = 1.0
DUE_RESEND_S = 1.0  # a due rule still due after this long (its message was lost) is enqueued again

Send = Callable[[str, int], None]  # (rule id, min position)


class AlertScheduler:
    def __init__(
        self,
        store: AlertStore,
        send: Send,
        database_url: str,
        position: Callable[[], int] = lambda: 0,
        sweep_s: float = 5.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``position``: this process's serving watermark (the trigger position of requests, due rules
        and sweeps)."""
        self.store = store
        self.send = send
        self.position = position
        self.sweep_s = sweep_s
        self.clock = clock
        self.leading = False
        self._leadership = SessionLock(database_url, LOCK)
        self._by_event = metrics_by_event()
        self._lock = threading.Lock()
        self._moved: set[tuple[str, str]] = set()
        self._moved_at = 0
        self._requested: set[str] = set()
        self._due_sent: dict[str, float] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.enqueued = 0  # messages this scheduler sent (tests, stats)

    # -- triggers (any thread; cheap) -----------------------------------------------------------------
    def on_applied(self, events: Sequence[RecordedEvent], watermark: int) -> None:
        if not self.leading:
            return
        moved = {(e.tenant_id, m) for e in events for m in self._by_event.get(e.event_type, ())}
        if moved:
            with self._lock:
                self._moved |= moved
                self._moved_at = max(self._moved_at, watermark)
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
        self._thread = threading.Thread(target=self.run, name="alert-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
        self._leadership.release()
        self.leading = False

    def run(self) -> None:
        next_sweep = 0.0
        next_leadership_check = 0.0
        wait = 0.0
        while not self._stop.is_set():
            self._wake.wait(max(0.0, wait))
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                now = time.monotonic()
                if now >= next_leadership_check:
                    was = self.leading
                    self.leading = self._leadership.hold()
                    next_leadership_check = now + LEADERSHIP_CHECK_S
                    if self.leading and not was:
                        log.info("alert scheduler: this process leads")
                        next_sweep = 0.0  # a new leader sweeps at once
                self._send_requested()
                wait = next_leadership_check - time.monotonic()
                if not self.leading:
                    with self._lock:
                        self._moved.clear()
                    continue
                self._send_moved()
                if time.monotonic() >= next_sweep:
                    self._send_all(self.store.enabled_ids())
                    next_sweep = time.monotonic() + self.sweep_s
                else:
                    self._send_due()
                wait = min(wait, next_sweep - time.monotonic())
                due = self.store.next_due()
                if due is not None:
                    wait = min(wait, max(0.05, (due - self.clock()).total_seconds()))
            except Exception:
                log.exception("alert scheduling round failed")
                wait = 1.0

    # -- one round ------------------------------------------------------------------------------------
    def _send_requested(self) -> None:
        with self._lock:
            ids, self._requested = self._requested, set()
        self._send_all(ids)

    def _send_moved(self) -> None:
        with self._lock:
            moved, self._moved = self._moved, set()
            at = self._moved_at
        if moved:
            for rule_id in self.store.ids_for(moved):
                self._send(rule_id, at)

    def _send_due(self) -> None:
        now = time.monotonic()
        due = self.store.due_ids(self.clock())
        self._due_sent = {r: at for r, at in self._due_sent.items() if r in due}
        for rule_id in due:
            if now - self._due_sent.get(rule_id, -DUE_RESEND_S) >= DUE_RESEND_S:
                self._due_sent[rule_id] = now
                self._send(rule_id, self.position())

    def _send_all(self, rule_ids: set[str] | list[str]) -> None:
        if rule_ids:
            at = self.position()
            for rule_id in sorted(rule_ids):
                self._send(rule_id, at)

    def _send(self, rule_id: str, position: int) -> None:
        self.send(rule_id, position)
        self.enqueued += 1

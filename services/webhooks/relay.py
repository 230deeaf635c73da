"""The webhook relay: the event store, tailed in commit order, is the outbox.

Each turn reads committed events (connectors.tailer.PostgresTailer), keeps them until the tailer's
watermark covers them (so they are handled in position order even when transactions commit out of
order), matches them against the active endpoints, inserts ``webhook_deliveries`` rows and the
checkpoint in ONE transaction, and only then enqueues drains. A crash before the commit re-reads the
events (the insert is idempotent per (endpoint, event)); a crash after it, or a lost message, is
covered by the sweep, which enqueues every endpoint whose head delivery is due and not leased.

Only one relay runs per database (a session advisory lock); others wait as standbys.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from connectors.advisory_lock import SessionLock
from connectors.checkpoints import CheckpointStore
from connectors.tailer import PostgresTailer, TailCursor
from connectors.webhook_store import WebhookStore
from domain.events import RecordedEvent
from readmodels.webhooks import relay_deliveries
from services.config import WebhookSettings

log = logging.getLogger("agentflow.webhooks.relay")

CHECKPOINT = "webhook_relay"


@dataclass
class RelayStatus:
    leader: bool = False
    position: int = 0
    watermark: int = 0
    deliveries_created: int = 0
    swept: int = 0
    last_error: str | None = None


class WebhookRelay:
    name = "webhook-relay"

    def __init__(
        self,
        engine: Engine,
        database_url: str,
        store: WebhookStore,
        kick: Callable[[str], None],
        settings: WebhookSettings,
        tailer: PostgresTailer | None = None,
    ) -> None:
        self.engine = engine
        self.database_url = database_url
        self.store = store
        self.kick = kick
        self.settings = settings
        self.checkpoints = CheckpointStore(engine)
        self.tailer = tailer or PostgresTailer(
            engine, database_url, listen=False, poll_interval=settings.relay_poll_s
        )
        self.status = RelayStatus()
        self._held: list[RecordedEvent] = []  # read, not yet covered by the watermark
        self._safe_cursor: TailCursor | None = None  # resume point with nothing held
        # one relay per database: a session advisory lock, which a crashed leader cannot keep
        self.leadership = SessionLock(database_url, "webhook-relay")

    def wake(self, *_: object) -> None:
        self.tailer.wake()

    # -- leadership ---------------------------------------------------------------------------------
    def _lead(self) -> bool:
        if self.leadership.hold():
            return True
        self.status.leader = False
        return False

    def _drop_lock(self) -> None:
        self.leadership.release()
        self.status.leader = False

    # -- loop ---------------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        next_sweep = 0.0
        try:
            while not stop.is_set():
                if not self._lead():
                    stop.wait(1.0)
                    continue
                if not self.status.leader:
                    self.status.leader = True
                    self._held, self._safe_cursor = [], None
                    cursor, wm = self.checkpoints.load(CHECKPOINT)
                    self._safe_cursor = cursor
                    self.tailer = PostgresTailer(
                        self.engine, self.database_url, initial_watermark=wm, listen=False,
                        poll_interval=self.settings.relay_poll_s,
                    )  # fmt: skip
                    self._cursor = cursor
                try:
                    busy = self.turn()
                    if time.monotonic() >= next_sweep:
                        self.sweep()
                        next_sweep = time.monotonic() + self.settings.sweep_interval_s
                    self.status.last_error = None
                except Exception as exc:
                    log.exception("webhook relay turn failed")
                    self.status.last_error = f"{type(exc).__name__}: {exc}"
                    self.status.leader = False  # reload the checkpoint next turn
                    stop.wait(1.0)
                    continue
                if self._held:
                    # read events wait for the watermark (a transaction below them still running):
                    # look again soon rather than after a full poll interval
                    stop.wait(0.005)
                elif not busy:
                    self.tailer.wait(self.settings.relay_poll_s)
        finally:
            self.tailer.close()
            self._drop_lock()

    def turn(self, limit: int = 1000) -> bool:
        """Read, hold until covered by the watermark, write deliveries + checkpoint, enqueue.
        True when there may be more to read at once."""
        batch = self.tailer.fetch(self._cursor, limit=limit)
        self._cursor = batch.cursor
        self._held.extend(batch.events)
        ready = sorted((e for e in self._held if e.position <= batch.watermark), key=lambda e: e.position)
        self._held = [e for e in self._held if e.position > batch.watermark]
        if not self._held:
            self._safe_cursor = batch.cursor
        if ready or batch.events:
            touched = self._write(ready, batch.watermark)
            for endpoint_id in sorted(touched):
                self.kick(endpoint_id)
        self.status.position = batch.cursor.position
        self.status.watermark = batch.watermark
        return not batch.caught_up

    def _write(self, events: list[RecordedEvent], watermark: int) -> set[str]:
        rows = relay_deliveries(events, self.store.active_endpoints() if events else [])
        touched = self.store.relay_batch(rows, CHECKPOINT, self._safe_cursor, watermark)
        self.status.deliveries_created += len(rows)
        return touched

    def sweep(self) -> int:
        """Enqueue endpoints with due work that nobody is draining (lost messages, dead workers,
        retries whose delayed message was lost)."""
        due = self.store.due_endpoints(grace_s=max(1.0, self.settings.sweep_interval_s))
        for endpoint_id in due:
            self.kick(endpoint_id)
        self.status.swept += len(due)
        return len(due)

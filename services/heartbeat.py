"""A worker-fleet process's heartbeat: every ``BEAT_S`` its row in ``worker_heartbeats``
(connectors/worker_heartbeats.py) is rewritten with the queues its Dramatiq workers consume and how
many of their threads are alive. No thread alive, no beat: the row ages out and ``/v1/health``'s
``workers`` component says so (connectors/engine_probes.py). A clean stop deletes the row at once."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

from dramatiq import Worker

from connectors.worker_heartbeats import HeartbeatStore

log = logging.getLogger(__name__)

BEAT_S = 5.0


def threads_alive(*workers: Worker | None) -> int:
    """Live worker threads of these Dramatiq workers."""
    return sum(1 for w in workers if w is not None for t in w.workers if t.is_alive())


class Heartbeat:
    def __init__(
        self, store: HeartbeatStore, queues: Callable[[], list[str]], alive: Callable[[], int], **info: Any
    ) -> None:
        self.store = store
        self.queues = queues
        self.alive = alive
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self.info = {"pid": os.getpid(), "host": socket.gethostname(), **info}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="worker-heartbeat", daemon=True)

    def beat(self) -> bool:
        alive = self.alive()
        if alive <= 0:
            return False
        self.store.beat(self.worker_id, sorted(self.queues()), {**self.info, "threads_alive": alive})
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.beat():
                    log.warning("no worker thread alive: not beating")
            except Exception as exc:  # database away: the row ages out and health says so
                log.warning("worker heartbeat failed: %s", exc)
            self._stop.wait(BEAT_S)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        try:
            self.store.remove(self.worker_id)
        except Exception:
            log.debug("removing the heartbeat row failed", exc_info=True)

"""A worker process's heartbeat in Redis: ``agentflow:heartbeat:worker:<host>:<pid>`` holds
``{"at": <unix time>, "pid", "host", "threads", "relay"}`` and expires after 15 s; it is rewritten
every 5 s. ``/v1/health`` lists the live keys as the ``workers`` component
(connectors/engine_probes.py). One SET per beat: cheap at any fleet size."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from typing import Any

from connectors.engine_probes import HEARTBEAT_PREFIX, HEARTBEAT_TTL_S

log = logging.getLogger(__name__)

BEAT_S = 5.0


class Heartbeat:
    def __init__(self, redis_url: str, **info: Any) -> None:
        import redis

        self.client = redis.Redis.from_url(redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self.key = f"{HEARTBEAT_PREFIX}{socket.gethostname()}:{os.getpid()}"
        self.info = {"pid": os.getpid(), "host": socket.gethostname(), **info}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="worker-heartbeat", daemon=True)

    def beat(self) -> None:
        self.client.set(self.key, json.dumps({**self.info, "at": time.time()}), ex=HEARTBEAT_TTL_S)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
            except Exception as exc:  # Redis away: the key expires and health says so
                log.warning("worker heartbeat failed: %s", exc)
            self._stop.wait(BEAT_S)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop beating and remove the key: a worker that stops cleanly is gone at once."""
        self._stop.set()
        self._thread.join(timeout=2)
        try:
            self.client.delete(self.key)
        except Exception:
            log.debug("removing the heartbeat key failed", exc_info=True)

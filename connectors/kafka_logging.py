"""librdkafka's log lines and errors through Python logging, one line per state, not per retry.

Without a ``logger`` librdkafka prints every failed reconnect to stderr: ~40 lines a second in the log of
``agentflow up`` while a broker is down. :func:`kafka_client_logging` gives a client config a stdlib
logger (whatever formatter the process installed applies) behind :class:`OncePerState`, and an
``error_cb`` that logs through it too (and tells an optional listener, e.g. the serving loader's status).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

_DIGITS = re.compile(r"\d+")
_SUPPRESSED = re.compile(r",? *\d+ identical error\(s\) suppressed")


class OncePerState(logging.Filter):
    """Let a record through when its text (numbers masked) was not let through for the same client in
    the last ``remind_s`` seconds; a passing record says how many like it were held back meanwhile."""

    def __init__(self, remind_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.remind_s = remind_s
        self.clock = clock
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}  # (client, state) -> (passed at, held)
        self._lock = threading.Lock()

    @staticmethod
    def state_of(record: logging.LogRecord) -> tuple[str, str]:
        args = record.args if isinstance(record.args, tuple) else ()
        client = str(args[1]) if len(args) >= 3 else record.name  # librdkafka: (facility, client, text)
        text = _DIGITS.sub("#", _SUPPRESSED.sub("", record.getMessage()))
        return client, text

    def filter(self, record: logging.LogRecord) -> bool:
        key = self.state_of(record)
        now = self.clock()
        with self._lock:
            passed_at, held = self._seen.get(key, (None, 0))
            if passed_at is not None and now - passed_at < self.remind_s:
                self._seen[key] = (passed_at, held + 1)
                return False
            if len(self._seen) > 1000:  # many distinct texts: forget the oldest half
                for old in sorted(self._seen, key=lambda k: self._seen[k][0])[:500]:
                    del self._seen[old]
            self._seen[key] = (now, 0)
        if held:
            record.msg = f"{record.msg} ({held} like it held back)"
        return True


_filter = OncePerState()
librdkafka_log = logging.getLogger("agentflow.librdkafka")
librdkafka_log.addFilter(_filter)


def kafka_client_logging(
    client: str, on_error: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Config entries for a confluent-kafka client: its logs and errors through Python logging,
    rate-limited. ``on_error`` gets each error's text (called from the client's polling thread)."""

    def error_cb(err: Any) -> None:
        text = err.str() if hasattr(err, "str") else str(err)
        librdkafka_log.warning("%s [%s] %s", "ERROR", client, text)
        if on_error is not None:
            try:
                on_error(text)
            except Exception:  # a listener must not break the client's poll
                log.exception("kafka error listener of %s failed", client)

    return {"logger": librdkafka_log, "error_cb": error_cb, "log.connection.close": False}

"""The engines' own output (a JVM's stdout/stderr file, the PyFlink client's output) into Python logging.

The engines write their logs to files under the run dir (log4j2, see java_process.py); what they print
outside log4j -- a crash, an uncaught exception, PyFlink's client errors -- lands in ``NAME.out``. A
thread follows those files (from their end when it starts, across restarts since the files are
appended to) and logs each new line as ``OUT [engine] line`` through ``agentflow.engines``, behind the
same once-per-state filter as librdkafka's lines: a retry loop printing the same text is one line a
minute, not a flood. Following files rather than pipes keeps an engine independent of this process
(no broken pipe when ``agentflow up`` dies before its engines).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from connectors.kafka_logging import OncePerState

engine_log = logging.getLogger("agentflow.engines")
engine_log.addFilter(OncePerState())

MAX_LINE = 2000
_SERIOUS = ("ERROR", "WARN", "Exception", "Error:", "FATAL", "Traceback")


class OutputRelay:
    def __init__(self, files: dict[str, Path], interval: float = 0.5) -> None:
        self.files = files
        self.interval = interval
        self._offsets: dict[str, int] = {name: _size(path) for name, path in files.items()}
        self._partial: dict[str, bytes] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def relay_once(self) -> int:
        """Log the lines written since the last call; returns how many."""
        count = 0
        for name, path in self.files.items():
            size = _size(path)
            offset = self._offsets.get(name, 0)
            if size < offset:  # truncated or replaced: start over
                offset = 0
            if size == offset:
                continue
            try:
                with path.open("rb") as f:
                    f.seek(offset)
                    data = self._partial.pop(name, b"") + f.read(size - offset)
            except OSError:
                continue
            self._offsets[name] = size
            *lines, rest = data.split(b"\n")
            if rest:
                self._partial[name] = rest
            for raw in lines:
                line = raw.decode(errors="replace").rstrip()
                if line:
                    level = logging.WARNING if any(m in line for m in _SERIOUS) else logging.INFO
                    engine_log.log(level, "%s [%s] %s", "OUT", name, line[:MAX_LINE])
                    count += 1
        return count

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.relay_once()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="engine-output", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.relay_once()  # what the engines said while stopping


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0

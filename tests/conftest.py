"""Puts tests/ on sys.path so test modules share helpers such as ``event_log``.

The session fixtures of real servers (Kafka + Connect, legacy Postgres + MariaDB) are registered here
once: imported into several test modules instead, each module would start its own servers.

Leak check: every process the tests start inherits ``AGENTFLOW_TEST_RUN`` (set here, unique per run).
At the end of the session any such process still alive — a Postgres, JVM, Redis, MariaDB or an
``agentflow`` child that a test forgot to stop — fails the run and is killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_server import RedisServer

pytest_plugins = ["distributed_stack", "legacy_databases"]

RUN_MARK = "AGENTFLOW_TEST_RUN"
LEAK_GRACE_S = 30.0  # servers told to stop may take a moment to exit: a hang, not a latency bound


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    """A redis-server of the test module's own, on a free 127.0.0.1 port (tests/redis_server.py)."""
    server = RedisServer()
    try:
        server.start(timeout=60)
        yield server
    finally:
        server.stop()


def pytest_configure(config: pytest.Config) -> None:
    os.environ[RUN_MARK] = uuid.uuid4().hex


def _marked_processes(mark: str) -> dict[int, str]:
    """Live (not zombie) processes whose environment carries ``mark``, except this one."""
    needle = f"{RUN_MARK}={mark}".encode()
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            if state == "Z":
                continue
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        found[int(entry.name)] = cmd.strip()[:200]
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    mark = os.environ.get(RUN_MARK)
    if not mark:
        return
    deadline = time.monotonic() + LEAK_GRACE_S
    leaked = _marked_processes(mark)
    pause = threading.Event()
    while leaked and time.monotonic() < deadline:
        pause.wait(0.2)
        leaked = _marked_processes(mark)
    if not leaked:
        return
    for pid in leaked:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    lines = "\n".join(f"  {pid}: {cmd}" for pid, cmd in sorted(leaked.items()))
    session.config.get_terminal_writer().line(
        f"\nLEAK: {len(leaked)} process(es) started by the tests were still alive (now killed):\n{lines}",
        red=True,
    )
    session.exitstatus = pytest.ExitCode.TESTS_FAILED

"""Run `agentflow up` as a child process and wait until it is ready (e2e tests; the benchmarks import it
with tests/ on sys.path)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from connectors.postgres_cluster import free_port

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class AgentFlowProcess:
    def __init__(
        self,
        data_dir: Path,
        api_keys: str,
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.api_keys = api_keys
        self.extra_args = extra_args
        self.extra_env = env or {}
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "agentflow.log"

    def start(self, timeout: float = 180.0) -> None:
        env = dict(os.environ)
        env["AGENTFLOW_API_KEYS"] = self.api_keys
        env.setdefault("AGENTFLOW_LOG_LEVEL", "WARNING")
        env.update(self.extra_env)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "services.cli",
                    "up",
                    "--port",
                    str(self.port),
                    "--data-dir",
                    str(self.data_dir),
                    *self.extra_args,
                ],
                stdout=logf,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=PROJECT_ROOT,
            )
        try:
            self._await_ready(self.proc, timeout)
        except BaseException:
            self.stop()  # a failed start leaves nothing running (the child may hold a Postgres, a JVM...)
            raise

    def _await_ready(self, proc: subprocess.Popen[bytes], timeout: float) -> None:
        """Poll /v1/health/ready until it answers 200; fail when the child exits or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        pause = threading.Event()  # never set: its wait() is the poll interval, not a sync point
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"agentflow up exited with {proc.returncode}:\n{self.tail()}")
            try:
                if httpx.get(f"{self.base}/v1/health/ready", timeout=5.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() >= deadline:
                raise RuntimeError(f"agentflow up not ready after {timeout}s:\n{self.tail()}")
            pause.wait(0.25)

    def tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    @contextmanager
    def running(self, tail: int = 2000) -> Iterator[AgentFlowProcess]:
        """Started for the block; its log's tail printed and the process stopped after it (a fixture's
        body)."""
        self.start()
        try:
            yield self
        finally:
            if self.proc is not None:
                print(self.tail(tail))
            self.stop()

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

"""Starts a Jaeger (v2, ``cmd/jaeger`` built from the Go module proxy: tests/go_tools.py) on free
127.0.0.1 ports, in-memory storage: an OTLP/HTTP receiver (``otlp_endpoint``) and the query API
(``query_url``, ``GET /api/traces/<trace id>``)."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Any

import httpx
from waiting import eventually

from connectors.postgres_cluster import free_port

CONFIG = """
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 10000
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:{query}
    grpc:
      endpoint: 127.0.0.1:{query_grpc}
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp}
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"""


class JaegerServer:
    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.otlp_port, self.query_port, self.grpc_port = free_port(), free_port(), free_port()
        self.otlp_endpoint = f"http://127.0.0.1:{self.otlp_port}"
        self.query_url = f"http://127.0.0.1:{self.query_port}"
        self.dir = Path(tempfile.mkdtemp(prefix="agentflow-jaeger-"))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> JaegerServer:
        config = self.dir / "config.yaml"
        ports = {"query": self.query_port, "query_grpc": self.grpc_port, "otlp": self.otlp_port}
        config.write_text(CONFIG.format(**ports))
        self.log = self.dir / "jaeger.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([self.binary, "--config", str(config)], stdout=out,
                                         stderr=subprocess.STDOUT)  # fmt: skip
        proc = self.proc

        def answers() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"jaeger exited with {proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                return httpx.get(f"{self.query_url}/api/services", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            eventually(answers, timeout, what="jaeger's query API answering")
        except BaseException:
            self.stop()
            raise
        return self

    def _trace(self, trace_id: str) -> dict[str, Any] | None:
        r = httpx.get(f"{self.query_url}/api/traces/{trace_id}", timeout=5)
        if r.status_code == 404:
            return None
        r.raise_for_status()
        data = r.json().get("data") or []
        return dict(data[0]) if data else None

    def trace(self, trace_id: str) -> list[dict[str, Any]]:
        """The spans Jaeger holds for ``trace_id`` (none yet: []), each with the ``serviceName`` of the
        process that sent it (resolved from the same answer: Jaeger numbers the processes per answer)."""
        found = self._trace(trace_id)
        if not found:
            return []
        names = {pid: p["serviceName"] for pid, p in found["processes"].items()}
        return [{**s, "serviceName": names.get(s.get("processID"))} for s in found["spans"]]

    def services(self, trace_id: str) -> set[str]:
        """The service names of the processes that sent ``trace_id``'s spans."""
        found = self._trace(trace_id)
        return {p["serviceName"] for p in found["processes"].values()} if found else set()


    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

"""The log lines of a real `agentflow up` (services/logs.py): its stderr is a file, so every line is JSON,
and each request the front door samples (here: all of them) leaves one access line with its ids."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from agentflow_process import AgentFlowProcess
from waiting import eventually

KEY = "logs-key"
TENANT = "tenant-logs"
TRACE = "0af7651916cd43dd8448eb211c80319c"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentFlowProcess]:
    srv = AgentFlowProcess(
        tmp_path_factory.mktemp("agentflow-logs"), f"{KEY}:{TENANT}",
        env={"AGENTFLOW_LOG_LEVEL": "INFO", "AGENTFLOW_ACCESS_LOG_SAMPLE": "1", "AGENTFLOW_ICEBERG": "0"},
    )  # fmt: skip
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _json_lines(log: Path) -> list[dict[str, Any]]:
    """The JSON lines of the child's output (the banner on stdout is plain text)."""
    lines = []
    for raw in log.read_text(errors="replace").splitlines():
        if raw.startswith("{"):
            lines.append(json.loads(raw))  # a line that starts like JSON must be JSON
    return lines


def _access_line(server: AgentFlowProcess, request_id: str) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        for line in _json_lines(server.log):
            if line.get("logger") == "agentflow.access" and line.get("request_id") == request_id:
                return line
        return None

    return eventually(find, what=lambda: f"access line of {request_id} in\n{server.tail()}")


def test_an_authenticated_request_leaves_a_json_access_line_with_its_ids(server: AgentFlowProcess) -> None:
    answer = httpx.get(
        f"{server.base}/v1/catalog",
        headers={"X-API-Key": KEY, "X-Correlation-ID": "order-flow-17",
                 "traceparent": f"00-{TRACE}-b7ad6b7169203331-01"},  # fmt: skip
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    line = _access_line(server, answer.headers["x-request-id"])
    assert (line["level"], line["logger"]) == ("info", "agentflow.access")
    assert (line["status"], line["method"]) == (200, "GET")
    assert line["path"] == "/v1/catalog"
    assert (line["tenant"], line["correlation_id"], line["trace_id"]) == (TENANT, "order-flow-17", TRACE)
    assert line["event"] == "GET /v1/catalog 200"
    assert line["duration_ms"] >= 0
    stamp = datetime.fromisoformat(line["time"])
    assert stamp.utcoffset() is not None and stamp.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


def test_a_command_access_line_carries_the_position(server: AgentFlowProcess) -> None:
    answer = httpx.post(
        f"{server.base}/v1/products",
        json={"name": "Desk lamp", "category": "home", "price": "24.90", "currency": "USD"},
        headers={"X-API-Key": KEY}, timeout=30,
    )  # fmt: skip
    assert answer.status_code == 201, answer.text
    line = _access_line(server, answer.headers["x-request-id"])
    assert (line["status"], line["method"], line["tenant"]) == (201, "POST", TENANT)
    assert line["position"] == answer.json()["position"]


def test_a_refused_request_is_logged_without_a_tenant(server: AgentFlowProcess) -> None:
    answer = httpx.get(f"{server.base}/v1/catalog", headers={"X-API-Key": "not-a-key"}, timeout=30)
    assert answer.status_code == 401
    request_id = answer.headers["x-request-id"]
    line = _access_line(server, request_id)
    assert (line["status"], line["level"]) == (401, "info")
    assert "tenant" not in line
    assert line["correlation_id"] == request_id == answer.json()["correlation_id"]

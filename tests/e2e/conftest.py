"""Starts `agentflow up` as a real subprocess (own Postgres cluster, chdb, Iceberg) for the e2e tests.

The clients handed to the tests follow the API's read-your-writes protocol: a read with
``min_position`` that the read model has not applied within the server's bound answers 503
``position_not_yet_applied`` with Retry-After, and the client asks again (API.md). How long the
projector takes is a benchmark figure, not something these tests assert; READ_PATIENCE_S only bounds a
hang.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from agentflow_process import AgentFlowProcess
from waiting import eventually
from webhook_receiver import Receiver

KEY_A = "e2e-key-a"
KEY_B = "e2e-key-b"
READ_PATIENCE_S = 120.0
_BODY_FRAMING = ("content-encoding", "content-length", "transfer-encoding")


class AsksAgainUntilApplied(httpx.BaseTransport):
    """Resends a ``min_position`` request while it answers 503 ``position_not_yet_applied``."""

    def __init__(self, patience: float = READ_PATIENCE_S) -> None:
        self.inner = httpx.HTTPTransport()
        self.patience = patience

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if "min_position" not in request.url.params:
            return self.inner.handle_request(request)
        request.read()  # the body (POST /v1/query) is sent again on each attempt

        def attempt() -> httpx.Response | None:
            resp = self.inner.handle_request(request)
            if resp.status_code != 503:
                return resp
            body = resp.read()
            resp.close()
            if b'"position_not_yet_applied"' in body:
                return None
            kept = [(k, v) for k, v in resp.headers.items() if k.lower() not in _BODY_FRAMING]
            return httpx.Response(503, headers=kept, content=body, request=request)  # another 503: as is

        return eventually(
            attempt, timeout=self.patience, interval=0.1, what=f"{request.url} never applied its min_position"
        )

    def close(self) -> None:
        self.inner.close()


def client(server: AgentFlowProcess, key: str, patience: float = READ_PATIENCE_S) -> httpx.Client:
    return httpx.Client(
        base_url=server.base,
        headers={"X-API-Key": key},
        timeout=30.0,
        transport=AsksAgainUntilApplied(patience),
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentFlowProcess]:
    # tenant A's key is also an operator's (read-model rebuilds in test_deadletter_replay); B's is plain
    srv = AgentFlowProcess(tmp_path_factory.mktemp("agentflow-e2e"), f"{KEY_A}:tenant-a,{KEY_B}:tenant-b",
                           env={"AGENTFLOW_OPERATOR_API_KEYS": KEY_A})  # fmt: skip
    srv.start()
    try:
        yield srv
    finally:
        if srv.proc is not None:
            print(srv.tail(2000))
        srv.stop()


@pytest.fixture()
def api_key() -> str:
    return KEY_A


@pytest.fixture()
def api(server: AgentFlowProcess) -> Iterator[httpx.Client]:
    with client(server, KEY_A) as c:
        yield c


@pytest.fixture()
def api_b(server: AgentFlowProcess) -> Iterator[httpx.Client]:
    with client(server, KEY_B) as c:
        yield c


# webhook and alert e2e: the receiver runs on 127.0.0.1, retries are quick, no lake
WEBHOOK_ENV = {
    "AGENTFLOW_WEBHOOK_ALLOW_PRIVATE": "1",
    "AGENTFLOW_WEBHOOK_RETRY_SCHEDULE": "0,0.5,0.5",
    "AGENTFLOW_WEBHOOK_TIMEOUT_S": "2",
    "AGENTFLOW_ICEBERG": "0",
}


@contextmanager
def webhook_server(data_dir: Path, api_keys: str, **env: str) -> Iterator[AgentFlowProcess]:
    """``agentflow up`` set up for deliveries to a local receiver (WEBHOOK_ENV plus ``env``)."""
    srv = AgentFlowProcess(data_dir, api_keys, env={**WEBHOOK_ENV, **env})
    srv.start()
    try:
        yield srv
    finally:
        print(srv.tail(3000))
        srv.stop()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def recorded_instant(api: httpx.Client, position: int) -> str:
    """An ``as_of`` instant that puts every event up to ``position`` (a command's answer) in the past and
    every later command's events in the future, read from the server's own record instead of waiting
    for the clock to tick: the latest ``recorded_at`` among the tenant's newest events up to it. Time
    travel takes events with recorded_at (and occurred_at, which is earlier) at or before ``as_of``; a
    later command's transaction starts after this one committed, so all its times are later."""
    params = {"cursor": position + 1, "limit": 20, "min_position": position}
    resp = api.get("/v1/changelog", params=params)
    assert resp.status_code == 200, resp.text
    changes = resp.json()["changes"]
    assert changes and changes[0]["position"] == position, changes
    latest = max(changes, key=lambda c: datetime.fromisoformat(c["recorded_at"].replace("Z", "+00:00")))
    return str(latest["recorded_at"])


@contextmanager
def limited_server(
    data_dir: Path, api_keys: str, read_rpm: int, write_rpm: int
) -> Iterator[AgentFlowProcess]:
    """``agentflow up`` with small per-key budgets (the SDKs' 429 tests), nothing downstream."""
    srv = AgentFlowProcess(data_dir, api_keys, env={
        "AGENTFLOW_RATE_LIMIT_READ_RPM": str(read_rpm), "AGENTFLOW_RATE_LIMIT_WRITE_RPM": str(write_rpm),
        "AGENTFLOW_ICEBERG": "0", "AGENTFLOW_WORKERS": "0", "AGENTFLOW_ALERTS": "0",
    })  # fmt: skip
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


"""Starts `agentflow up` as a real subprocess (own Postgres cluster, chdb, Iceberg) for the e2e tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from webhook_receiver import Receiver

from services.child_process import AgentFlowProcess

KEY_A = "e2e-key-a"
KEY_B = "e2e-key-b"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentFlowProcess]:
    srv = AgentFlowProcess(tmp_path_factory.mktemp("agentflow-e2e"), f"{KEY_A}:tenant-a,{KEY_B}:tenant-b")
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
    with httpx.Client(base_url=server.base, headers={"X-API-Key": KEY_A}, timeout=30.0) as client:
        yield client


@pytest.fixture()
def api_b(server: AgentFlowProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base, headers={"X-API-Key": KEY_B}, timeout=30.0) as client:
        yield client


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


def client(server: AgentFlowProcess, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.base, headers={"X-API-Key": key}, timeout=30.0)

"""Starts `agentflow up` as a real subprocess (own Postgres cluster, chdb, Iceberg) for the e2e tests."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

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

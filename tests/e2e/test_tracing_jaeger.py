"""One command's trace in a real Jaeger: ``agentflow up`` exports over OTLP/HTTP, and the trace Jaeger
stores for the command holds the HTTP span, the command, the append and the read-model write, each the
child of the one before."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from agentflow_process import AgentFlowProcess
from go_tools import go_tool
from jaeger_server import JaegerServer
from waiting import eventually

from .conftest import KEY_A, client

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def jaeger() -> Iterator[JaegerServer]:
    server = JaegerServer(go_tool("jaeger")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def traced_server(
    jaeger: JaegerServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AgentFlowProcess]:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_endpoint, "OTEL_SERVICE_NAME": "agentflow-e2e",
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # export batches every 100 ms, not every 5 s
    }  # fmt: skip
    server = AgentFlowProcess(tmp_path_factory.mktemp("traced") / "data", f"{KEY_A}:tenant-a",
                              extra_args=["--no-iceberg"], env=env)  # fmt: skip
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_jaeger_shows_append_projection_and_read_model_write(
    jaeger: JaegerServer, traced_server: AgentFlowProcess
) -> None:
    trace_id, caller = secrets.token_hex(16), secrets.token_hex(8)
    with client(traced_server, KEY_A) as api:
        product = {"name": "Traced", "category": "t", "price": "1.25", "currency": "USD"}
        r = api.post("/v1/products", json=product, headers={"traceparent": f"00-{trace_id}-{caller}-01"})
        assert r.status_code == 201, r.text
        pid, position = r.json()["product_id"], r.json()["position"]
        assert api.get(f"/v1/entity/product/{pid}", params={"min_position": position}).status_code == 200

    wanted = {"POST /v1/products", "event_store.append", "clickhouse.apply"}

    def stored() -> list[dict[str, Any]] | None:
        spans = jaeger.trace(trace_id)
        names = {s["operationName"] for s in spans}
        return spans if wanted <= names and any(n.startswith("command ") for n in names) else None

    spans = eventually(stored, timeout=60, interval=0.2, what=lambda: f"trace {trace_id} in jaeger")
    by_name = {s["operationName"]: s for s in spans}
    command = next(s for s in spans if s["operationName"].startswith("command "))

    def parent(span: dict[str, Any]) -> str | None:
        refs = [r for r in span.get("references", []) if r["refType"] == "CHILD_OF"]
        return refs[0]["spanID"] if refs else None

    http, append = by_name["POST /v1/products"], by_name["event_store.append"]
    write = by_name["clickhouse.apply"]
    assert parent(http) == caller
    assert parent(command) == http["spanID"]
    assert parent(append) == command["spanID"]
    assert parent(write) == append["spanID"]
    tags = {t["key"]: t["value"] for t in write["tags"]}
    assert tags["agentflow.position"] == position
    assert jaeger.services(trace_id) == {"agentflow-e2e"}



"""One command's trace through the distributed deployment, in a real Jaeger: the API appends, the Flink
job's Python operator processes the event, the serving loader inserts it into ClickHouse, and Jaeger
holds ``event_store.append`` with two children, ``flink.project`` (sent by the Flink worker, service
``agentflow-flink``) and ``loader.apply`` (sent by the API process).

The stack is started the way a user would trace it: ``OTEL_EXPORTER_OTLP_ENDPOINT`` set in the
environment the Flink job inherits. It is a stack of its own (Kafka, Connect, Flink without the lake
sink): 75-120 s of set-up on two shared cores, the price of the only test that sees the Flink hop.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from agentflow_process import AgentFlowProcess
from jaeger_server import JaegerServer
from waiting import eventually

from connectors.postgres_cluster import PostgresCluster
from e2e.conftest import KEY_A, client
from e2e.test_distributed_end_to_end import PATIENCE_S, postgres  # noqa: F401  (a cluster of this module)
from e2e.test_tracing_jaeger import jaeger  # noqa: F401  (a Jaeger of this module)
from services.distributed.stack import DistributedStack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "100"}  # the API exports every 100 ms, not every 5 s


@pytest.fixture(scope="module")
def traced_stack(
    jaeger: JaegerServer,  # noqa: F811
    postgres: PostgresCluster,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DistributedStack]:
    if shutil.which("java") is None:
        pytest.fail("java is required for the distributed deployment (Kafka, Connect, Flink)")
    s = DistributedStack(tmp_path_factory.mktemp("traced-stack"), postgres.url, lake=False, say=print)
    try:
        with pytest.MonkeyPatch.context() as mp:  # what the Flink job inherits: its defaults otherwise
            mp.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", jaeger.otlp_endpoint)
            for key in ("OTEL_SERVICE_NAME", *FAST_EXPORT):
                mp.delenv(key, raising=False)
            s.start()
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def traced_server(
    traced_stack: DistributedStack,
    jaeger: JaegerServer,  # noqa: F811
    postgres: PostgresCluster,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AgentFlowProcess]:
    args = ("--distributed", "--external", "--kafka-bootstrap", traced_stack.bootstrap,
            "--database-url", postgres.url)  # fmt: skip
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_endpoint, "OTEL_SERVICE_NAME": "agentflow-e2e",
           **FAST_EXPORT}  # fmt: skip
    srv = AgentFlowProcess(tmp_path_factory.mktemp("traced-api"), f"{KEY_A}:tenant-a", args, env=env)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _parent(span: dict[str, Any]) -> str | None:
    refs = [r for r in span.get("references", []) if r["refType"] == "CHILD_OF"]
    return refs[0]["spanID"] if refs else None


def _tags(span: dict[str, Any]) -> dict[str, Any]:
    return {t["key"]: t["value"] for t in span["tags"]}


def test_the_flink_hop_joins_the_command_trace(jaeger: JaegerServer, traced_server: AgentFlowProcess) -> None:  # noqa: F811
    trace_id, caller = secrets.token_hex(16), secrets.token_hex(8)
    with client(traced_server, KEY_A, patience=PATIENCE_S) as api:
        product = {"name": "Traced", "category": "t", "price": "1.25", "currency": "USD"}
        r = api.post("/v1/products", json=product, headers={"traceparent": f"00-{trace_id}-{caller}-01"})
        assert r.status_code == 201, r.text
        pid, position = r.json()["product_id"], r.json()["position"]
        # applied through Debezium, Kafka, Flink and the loader (the client asks again until then)
        assert api.get(f"/v1/entity/product/{pid}", params={"min_position": position}).status_code == 200

    wanted = {"event_store.append", "flink.project", "loader.apply"}

    def stored() -> list[dict[str, Any]] | None:
        spans = jaeger.trace(trace_id)
        return spans if wanted <= {s["operationName"] for s in spans} else None

    spans = eventually(stored, timeout=60, interval=0.2, what=lambda: f"{wanted} in trace {trace_id}")
    by_name = {s["operationName"]: s for s in spans}
    append, flink, loader = (by_name[n] for n in ("event_store.append", "flink.project", "loader.apply"))
    assert _parent(flink) == append["spanID"]
    assert _parent(loader) == append["spanID"]
    tags = _tags(flink)
    assert tags["span.kind"] == "consumer"
    assert tags["agentflow.position"] == position
    assert tags["agentflow.event_type"] == "ProductRegistered"
    assert tags["agentflow.tenant"] == "tenant-a"
    assert (tags["agentflow.serving"], tags["agentflow.dead_letter"]) == (1, 0)
    assert _tags(loader)["agentflow.position"] == position
    assert (flink["serviceName"], append["serviceName"]) == ("agentflow-flink", "agentflow-e2e")
    assert jaeger.services(trace_id) == {"agentflow-e2e", "agentflow-flink"}

"""``agentflow mcp`` against a live ``agentflow up``, through the ``mcp`` package's own clients: over stdio
(the client spawns ``agentflow mcp`` as its subprocess) every read tool answers the values the commands
wrote, each with its freshness and position; the descriptions name the catalog's metrics; a read-only key
sees no command tool, a write key's place_order appends an order that get_entity with min_position reads
back; the resources serve the catalog and the contracts; and over streamable HTTP the same, behind the key."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from agentflow_client import Client, OrderLine, RetryPolicy
from agentflow_process import PROJECT_ROOT, AgentFlowProcess
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from waiting import eventually

from connectors.postgres_cluster import free_port

pytestmark = pytest.mark.e2e

WRITER, ADMIN_TENANT = "mcp-e2e-writer", "tenant-mcp"
PATIENT = RetryPolicy(max_retries=200, max_backoff=1.0)
READ_TOOLS = {"get_metric", "metric_series", "get_entity", "order_timeline", "query", "explain", "search",
              "catalog", "lineage"}  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentFlowProcess]:
    srv = AgentFlowProcess(tmp_path_factory.mktemp("agentflow-mcp"), f"{WRITER}:{ADMIN_TENANT}",
                           env={"AGENTFLOW_ADMIN_API_KEYS": WRITER, "AGENTFLOW_ICEBERG": "0"})  # fmt: skip
    srv.start()
    try:
        yield srv
    finally:
        print(srv.tail(2000))
        srv.stop()


@pytest.fixture(scope="module")
def reader_key(server: AgentFlowProcess) -> str:
    r = httpx.post(f"{server.base}/v1/admin/keys", json={"name": "mcp reader", "scopes": ["read"]},
                   headers={"X-API-Key": WRITER}, timeout=30)  # fmt: skip
    assert r.status_code == 201, r.text
    return str(r.json()["secret"])


@pytest.fixture(scope="module")
def shop(server: AgentFlowProcess) -> dict[str, Any]:
    """Two orders on a channel of their own (so the revenue filtered by it is theirs only), one confirmed."""
    channel = f"mcp-{uuid.uuid4().hex[:8]}"
    with Client(server.base, WRITER, retry=PATIENT) as api:
        product = api.register_product(name=f"MCP lamp {channel}", category="lighting", price="19.99",
                                       currency="EUR").product_id  # fmt: skip
        api.restock_product(product, 100)
        user = api.register_user(name="MCP buyer").user_id
        first = api.place_order(user_id=user, lines=[OrderLine(product, 2, "19.99")], currency="EUR",
                                channel=channel)  # fmt: skip
        second = api.place_order(user_id=user, lines=[OrderLine(product, 1, "5.50")], currency="EUR",
                                 channel=channel)  # fmt: skip
        confirmed = api.confirm_order(first.order_id)
    return {"channel": channel, "product": product, "user": user, "first": first.order_id,
            "second": second.order_id, "position": confirmed.position,
            "revenue": Decimal("45.48")}  # fmt: skip


@asynccontextmanager
async def stdio_session(server: AgentFlowProcess, key: str) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "services.cli", "mcp", "--url", server.base, "--api-key", key],
        cwd=PROJECT_ROOT, env={"AGENTFLOW_LOG_LEVEL": "WARNING"},
    )  # fmt: skip
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


async def call(session: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await session.call_tool(tool, arguments)
    assert not result.is_error, result.content
    doc = result.structured_content
    assert isinstance(doc, dict) and set(doc) == {"data", "freshness"}, doc
    fresh = doc["freshness"]
    assert isinstance(fresh["as_of_position"], int), doc
    assert isinstance(fresh["freshness_seconds"], int | float), doc
    return doc


def test_every_read_tool_answers_what_the_commands_wrote(
    server: AgentFlowProcess, shop: dict[str, Any]
) -> None:
    pos, channel = shop["position"], shop["channel"]

    async def scenario() -> None:
        async with stdio_session(server, WRITER) as s:
            tools = {t.name: t for t in (await s.list_tools()).tools}
            assert set(tools) >= READ_TOOLS
            catalog = await call(s, "catalog")
            metrics = catalog["data"]["metrics"]
            assert "revenue" in metrics and "order" in catalog["data"]["entities"]
            described = tools["get_metric"].description or ""
            assert all(f"- {name}:" in described for name in metrics), described  # from the contracts
            assert metrics["revenue"]["description"] in described

            revenue = await call(s, "get_metric", name="revenue", window="1h", currency="EUR",
                                 channel=channel, min_position=pos)  # fmt: skip
            assert Decimal(str(revenue["data"]["value"])) == shop["revenue"]
            assert revenue["freshness"]["as_of_position"] >= pos
            assert revenue["freshness"]["source"] == "answer"
            count = await call(s, "get_metric", name="order_count", window="1h", channel=channel,
                               min_position=pos)  # fmt: skip
            assert count["data"]["value"] == 2

            series = await call(s, "metric_series", name="revenue", window="1h", grain="1m", currency="EUR",
                                channel=channel, min_position=pos)  # fmt: skip
            total = sum(Decimal(str(p["value"])) for p in series["data"]["points"])
            assert total == shop["revenue"]

            order = await call(s, "get_entity", entity_type="order", entity_id=shop["first"],
                               min_position=pos)  # fmt: skip
            assert order["data"]["data"]["status"] == "confirmed"
            assert Decimal(str(order["data"]["data"]["total_amount"])) == Decimal("39.98")
            user = await call(s, "get_entity", entity_type="user", entity_id=shop["user"], min_position=pos)
            assert user["data"]["data"]["total_orders"] == 2
            assert Decimal(str(user["data"]["data"]["total_spent"])) == shop["revenue"]

            timeline = await call(s, "order_timeline", order_id=shop["first"])
            assert [e["event_type"] for e in timeline["data"]["events"]] == ["OrderPlaced", "OrderConfirmed"]

            semantic = await call(s, "query", metrics=["revenue"], dimensions=["channel"], window="1h",
                                  filters={"currency": "EUR"}, min_position=pos)  # fmt: skip
            mine = [r for r in semantic["data"]["rows"] if r.get("channel") == channel]
            assert len(mine) == 1 and Decimal(str(mine[0]["revenue"])) == shop["revenue"], semantic["data"]
            asked = await call(s, "query", question="How many orders in the last hour?", min_position=pos)
            assert asked["data"]["rows"] and asked["data"]["sql"]
            explained = await call(s, "explain", question="revenue by channel in the last hour")
            assert "orders" in explained["data"]["tables"] and explained["freshness"]["source"] == "changelog"

            found = await call(s, "search", q=f"MCP lamp {channel}", min_position=pos)
            assert shop["product"] in [h["id"] for h in found["data"]["results"]], found["data"]
            lineage = await call(s, "lineage", entity_type="order", entity_id=shop["first"], min_position=pos)
            assert {e["type"] for e in lineage["data"]["events"]} >= {"OrderPlaced", "OrderConfirmed"}

            missing = await s.call_tool("get_entity", {"entity_type": "order", "entity_id": "ORD-NOPE-0001"})
            assert missing.is_error and "404" in str(missing.content[0])

            uris = {str(r.uri) for r in (await s.list_resources()).resources}
            assert {"agentflow://catalog", "agentflow://contracts"} <= uris
            contract = await s.read_resource("agentflow://contracts/revenue")
            text = getattr(contract.contents[0], "text", "")
            assert json.loads(text)["name"] == "revenue"
            listed = (await s.read_resource("agentflow://contracts")).contents[0]
            assert "revenue" in getattr(listed, "text", "")

    anyio.run(scenario)


def test_a_read_key_gets_no_commands_and_a_write_keys_order_is_read_back(
    server: AgentFlowProcess, shop: dict[str, Any], reader_key: str
) -> None:
    async def scenario() -> None:
        async with stdio_session(server, reader_key) as s:
            names = {t.name for t in (await s.list_tools()).tools}
            assert names == READ_TOOLS
        async with stdio_session(server, WRITER) as s:
            names = {t.name for t in (await s.list_tools()).tools}
            assert {"place_order", "confirm_order", "cancel_order", "initiate_payment"} <= names
            line = {"product_id": shop["product"], "quantity": 3, "unit_price": "2.00"}
            placed = await call(s, "place_order", user_id=shop["user"], currency="EUR",
                                channel=shop["channel"], lines=[line])  # fmt: skip
            ack = placed["data"]
            assert placed["freshness"]["as_of_position"] == ack["position"] and ack["stream_version"] == 1
            order = await call(s, "get_entity", entity_type="order", entity_id=ack["order_id"],
                               min_position=ack["position"])  # fmt: skip
            assert order["data"]["data"]["status"] == "pending"
            assert Decimal(str(order["data"]["data"]["total_amount"])) == Decimal("6.00")
            assert order["freshness"]["as_of_position"] >= ack["position"]
            cancelled = await call(s, "cancel_order", order_id=ack["order_id"], reason="mcp test")
            assert cancelled["data"]["stream_version"] == 2

    anyio.run(scenario)


def test_streamable_http_answers_behind_the_key(server: AgentFlowProcess, shop: dict[str, Any]) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "mcp", "--url", server.base, "--api-key", WRITER,
         "--transport", "http", "--port", str(port)],
        cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/mcp"
    try:

        def listening() -> int | None:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                return httpx.post(url, json={}, timeout=5).status_code
            except httpx.TransportError:
                return None

        assert eventually(listening, timeout=60, what="agentflow mcp --transport http listening") == 401

        async def scenario() -> None:
            headers = {"Authorization": f"Bearer {WRITER}"}
            async with httpx2.AsyncClient(headers=headers, timeout=60) as http, streamable_http_client(
                url, http_client=http
            ) as (read, write), ClientSession(read, write) as s:
                await s.initialize()
                names = {t.name for t in (await s.list_tools()).tools}
                assert names >= READ_TOOLS and "place_order" in names
                revenue = await call(s, "get_metric", name="revenue", window="1h", currency="EUR",
                                     channel=shop["channel"], min_position=shop["position"])  # fmt: skip
                assert Decimal(str(revenue["data"]["value"])) >= shop["revenue"]

        anyio.run(scenario)
    finally:
        proc.terminate()
        proc.wait(timeout=30)

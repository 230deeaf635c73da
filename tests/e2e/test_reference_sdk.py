"""Every public method of the reference AgentFlow Python SDK (tests/reference_sdk, vendored unmodified),
sync and async, against a live `agentflow up`, checking the values.

The module writes a small shop of tenant A through the command endpoints first (the server is the
module's own, so every order in the metrics' windows is one written here) and computes what each read
must answer from what it wrote: revenue and order counts from the order lines, the user's aggregates,
the session funnel. Contracts are checked against the YAML files read directly. The SDK sends no
``min_position``: the writes are awaited once through our own client with ``min_position``, then the SDK
reads. Both clients make the same calls and pass the same checks; a public method the checks do not
name fails the test, so a newer SDK cannot slip a method past it.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from agentflow_process import AgentFlowProcess

from e2e.conftest import KEY_A, client

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reference_sdk"))
from agentflow import AgentFlowClient, AsyncAgentFlowClient  # noqa: E402
from agentflow.circuit_breaker import CircuitBreaker  # noqa: E402
from agentflow.retry import RetryPolicy  # noqa: E402

CONTRACTS = Path(__file__).resolve().parents[2] / "readmodels" / "contracts"
BY_CHANNEL = "How many orders by channel in the last hour?"
REVENUE = "What is the revenue?"
VERSION_HEADERS = (
    "last_server_version", "last_latest_version", "last_deprecated", "last_deprecation_warning"
)  # fmt: skip


def _ok(resp: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    return body


@dataclass
class Shop:
    gadget: str  # product "SDK Widget", category sdkgadgets, 12.50
    tool: str  # product "SDK Gizmo", category sdktools, 4.00
    user: str
    orders: dict[str, str]  # label -> order id
    totals: dict[str, float]  # label -> order total, major units
    revenue: float  # non-cancelled orders
    by_channel: dict[str, int]  # channel -> non-cancelled orders
    converted: str  # a session that reached checkout
    browsed: str  # a session with one page view
    position: int  # the last write


@pytest.fixture(scope="module")
def shop(server: AgentFlowProcess) -> Iterator[Shop]:
    with client(server, KEY_A) as api:

        def product(name: str, category: str, price: str) -> str:
            body = {"name": name, "category": category, "price": price, "currency": "USD"}
            pid = str(_ok(api.post("/v1/products", json=body), 201)["product_id"])
            _ok(api.post(f"/v1/products/{pid}/restock", json={"quantity": 100}))
            return pid

        gadget, tool = product("SDK Widget", "sdkgadgets", "12.50"), product("SDK Gizmo", "sdktools", "4.00")
        user = str(_ok(api.post("/v1/users", json={"name": "SDK", "region": "eu"}), 201)["user_id"])
        prices = {gadget: 12.50, tool: 4.00}
        plan = {  # label -> channel, [(product, quantity)]
            "two_gadgets": ("sdkweb", [(gadget, 2)]),
            "one_tool": ("sdkapp", [(tool, 1)]),
            "mixed": ("sdkweb", [(gadget, 1), (tool, 1)]),
            "cancelled": ("sdkapp", [(gadget, 1)]),
        }
        orders: dict[str, str] = {}
        for label, (channel, lines) in plan.items():
            body = {"user_id": user, "currency": "USD", "channel": channel, "lines": [
                {"product_id": p, "quantity": q, "unit_price": f"{prices[p]:.2f}"} for p, q in lines
            ]}  # fmt: skip
            orders[label] = str(_ok(api.post("/v1/orders", json=body), 201)["order_id"])
        _ok(api.post(f"/v1/orders/{orders['cancelled']}/cancel", json={}))
        converted, browsed = "SES-sdk-converted", "SES-sdk-browsed"
        steps = [("page_view", "/"), ("click", "/p"), ("add_to_cart", "/p"), ("checkout", "/checkout")]
        for kind, page in steps:
            event = {"type": kind, "page_url": page, "user_id": user}
            if kind == "add_to_cart":
                event["product_id"] = gadget
            api.post(f"/v1/sessions/{converted}/events", json=event).raise_for_status()
        resp = api.post(f"/v1/sessions/{browsed}/events", json={"type": "page_view", "page_url": "/"})
        position = int(_ok(resp, 201)["position"])
        totals = {label: sum(prices[p] * q for p, q in lines) for label, (_, lines) in plan.items()}
        live = [label for label in plan if label != "cancelled"]
        by_channel: dict[str, int] = {}
        for label in live:
            by_channel[plan[label][0]] = by_channel.get(plan[label][0], 0) + 1
        # the SDK sends no min_position: every read model it reads has applied the last write first
        wait = {"min_position": position}
        _ok(api.get("/v1/metrics/revenue", params={**wait, "window": "1h"}))
        _ok(api.get(f"/v1/entity/session/{browsed}", params=wait))
        _ok(api.get("/v1/search", params={**wait, "q": "SDK Widget"}))
        _ok(api.get(f"/v1/lineage/order/{orders['mixed']}", params=wait))
        _ok(api.post("/v1/query", params=wait, json={"question": BY_CHANNEL}))
        yield Shop(gadget, tool, user, orders, totals, sum(totals[x] for x in live), by_channel, converted,
                   browsed, position)  # fmt: skip


def _public(cls: type) -> set[str]:
    return {n for n in dir(cls) if not n.startswith("_")}


def _candidate(version: str, drop: str) -> dict[str, Any]:
    """The current order schema as the SDK's users write one: ``fields`` a list, one field dropped, one
    optional field added."""
    current = _yaml_versions("order")[-1]
    fields = [{"name": n, "type": f["type"], "required": f["required"], "description": f["description"]}
              for n, f in current["fields"].items() if n != drop]  # fmt: skip
    fields.append({"name": "gift_note", "type": "string", "required": False, "description": "a note"})
    return {"entity": "order", "version": version, "fields": fields}


def _yaml_versions(name: str) -> list[dict[str, Any]]:
    versions: list[dict[str, Any]] = yaml.safe_load((CONTRACTS / f"{name}.yaml").read_text())["versions"]
    return versions


def _sync_calls(base: str, shop: Shop) -> dict[str, Any]:
    c = AgentFlowClient(base, KEY_A, timeout=30.0)
    pinned = AgentFlowClient(base, KEY_A, timeout=30.0, contract_version="order:v1.0.0")
    try:
        r: dict[str, Any] = {
            "configure_resilience": c.configure_resilience(RetryPolicy(max_attempts=2), CircuitBreaker()),
            "get_entity": c.get_entity("order", shop.orders["two_gadgets"]),
            "get_entity_pinned": pinned.get_entity("order", shop.orders["two_gadgets"]),
            "get_order": c.get_order(shop.orders["mixed"]),
            "get_order_cancelled": c.get_order(shop.orders["cancelled"]),
            "get_user": c.get_user(shop.user),
            "get_product": c.get_product(shop.gadget),
            "get_session": c.get_session(shop.converted),
            "get_session_browsed": c.get_session(shop.browsed),
            "get_metric": c.get_metric("revenue", "1h"),
            "get_metric_count": c.get_metric("order_count", "1h"),
            "get_metric_aov": c.get_metric("avg_order_value", window="1h"),
            "query": c.query(BY_CHANNEL),
            "query_revenue": c.query(REVENUE, limit=5),
            "explain_query": c.explain_query("revenue by channel today"),
            "search": c.search("SDK Widget", limit=5, entity_types=["product"]),
            "list_contracts": c.list_contracts(),
            "get_contract": c.get_contract("order"),
            "get_contract_version": c.get_contract("order", "1.0.0"),
            "diff_contracts": c.diff_contracts("order", "1.0.0", "1.1.0"),
            "validate_contract": c.validate_contract("order", _candidate("2.0.0", "channel")),
            "validate_contract_minor": c.validate_contract("order", _candidate("1.2.0", "channel")),
            "get_lineage": c.get_lineage("order", shop.orders["mixed"]),
            "get_changelog": c.get_changelog(),
            "paginate": list(c.paginate(BY_CHANNEL, page_size=1)),
            "health": c.health(),
            "is_fresh": c.is_fresh(max_age_seconds=3600),
            "catalog": c.catalog(),
            "batch_entity": c.batch_entity("order", shop.orders["two_gadgets"], request_id="e"),
            "batch_metric": c.batch_metric("revenue", "1h", request_id="m"),
            "batch_query": c.batch_query(REVENUE, context={"agent": "sdk-test"}, request_id="q"),
        }
        r["batch"] = c.batch([r["batch_entity"], r["batch_metric"], r["batch_query"]])
        for prop in VERSION_HEADERS:
            r[prop] = getattr(c, prop)
        return r
    finally:
        c._client.close()
        pinned._client.close()


async def _async_calls(base: str, shop: Shop) -> dict[str, Any]:
    async with AsyncAgentFlowClient(base, KEY_A, timeout=30.0) as c, AsyncAgentFlowClient(
        base, KEY_A, timeout=30.0, contract_version="order:v1.0.0"
    ) as pinned:
        r: dict[str, Any] = {
            "configure_resilience": c.configure_resilience(RetryPolicy(max_attempts=2), CircuitBreaker()),
            "get_entity": await c.get_entity("order", shop.orders["two_gadgets"]),
            "get_entity_pinned": await pinned.get_entity("order", shop.orders["two_gadgets"]),
            "get_order": await c.get_order(shop.orders["mixed"]),
            "get_order_cancelled": await c.get_order(shop.orders["cancelled"]),
            "get_user": await c.get_user(shop.user),
            "get_product": await c.get_product(shop.gadget),
            "get_session": await c.get_session(shop.converted),
            "get_session_browsed": await c.get_session(shop.browsed),
            "get_metric": await c.get_metric("revenue", "1h"),
            "get_metric_count": await c.get_metric("order_count", "1h"),
            "get_metric_aov": await c.get_metric("avg_order_value", window="1h"),
            "query": await c.query(BY_CHANNEL),
            "query_revenue": await c.query(REVENUE, limit=5),
            "explain_query": await c.explain_query("revenue by channel today"),
            "search": await c.search("SDK Widget", limit=5, entity_types=["product"]),
            "list_contracts": await c.list_contracts(),
            "get_contract": await c.get_contract("order"),
            "get_contract_version": await c.get_contract("order", "1.0.0"),
            "diff_contracts": await c.diff_contracts("order", "1.0.0", "1.1.0"),
            "validate_contract": await c.validate_contract("order", _candidate("2.0.0", "channel")),
            "validate_contract_minor": await c.validate_contract("order", _candidate("1.2.0", "channel")),
            "get_lineage": await c.get_lineage("order", shop.orders["mixed"]),
            "get_changelog": await c.get_changelog(),
            "paginate": [page async for page in c.paginate(BY_CHANNEL, page_size=1)],
            "health": await c.health(),
            "is_fresh": await c.is_fresh(max_age_seconds=3600),
            "catalog": await c.catalog(),
            "batch_entity": c.batch_entity("order", shop.orders["two_gadgets"], request_id="e"),
            "batch_metric": c.batch_metric("revenue", "1h", request_id="m"),
            "batch_query": c.batch_query(REVENUE, context={"agent": "sdk-test"}, request_id="q"),
        }
        r["batch"] = await c.batch([r["batch_entity"], r["batch_metric"], r["batch_query"]])
        for prop in VERSION_HEADERS:
            r[prop] = getattr(c, prop)
        return r


def _check(r: dict[str, Any], shop: Shop, client_cls: type) -> None:
    assert _public(client_cls) <= set(r), f"not called: {_public(client_cls) - set(r)}"
    assert r["configure_resilience"].retry_policy.max_attempts == 2

    # entities
    two = r["get_entity"]
    assert (two.entity_type, two.entity_id) == ("order", shop.orders["two_gadgets"])
    assert two.data["total_amount"] == shop.totals["two_gadgets"] == 25.0
    assert two.meta is not None and two.meta.is_historical is False
    v1 = {n for n, f in _yaml_versions("order")[0]["fields"].items()}
    assert set(r["get_entity_pinned"].data) == v1 and "channel" in two.data  # the pinned 1.0.0 fields only
    mixed = r["get_order"]
    assert (mixed.order_id, mixed.user_id, mixed.status, mixed.currency) == (
        shop.orders["mixed"], shop.user, "pending", "USD"
    )
    assert mixed.total_amount == shop.totals["mixed"] == 16.5 and mixed.is_overdue is False
    assert r["get_order_cancelled"].status == "cancelled"
    user = r["get_user"]
    assert (user.user_id, user.total_orders, user.total_spent) == (shop.user, 3, shop.revenue)
    assert user.preferred_category == "sdkgadgets"  # 3 live units against 2 of sdktools
    assert user.first_order_at <= user.last_order_at
    product = r["get_product"]
    assert (product.product_id, product.name, product.category, product.price) == (
        shop.gadget, "SDK Widget", "sdkgadgets", 12.5
    )
    # 100 restocked; 2 + 1 reserved by live orders (the cancelled order released its unit)
    assert product.in_stock is True and product.stock_quantity == 97
    session = r["get_session"]
    assert (session.session_id, session.user_id, session.event_count, session.unique_pages) == (
        shop.converted, shop.user, 4, 3
    )
    assert (session.funnel_stage, session.is_conversion) == ("checkout", True)
    browsed = r["get_session_browsed"]
    assert (browsed.event_count, browsed.unique_pages, browsed.funnel_stage, browsed.is_conversion) == (
        1, 1, "browse", False
    )

    # metrics: only this module's orders are in the window
    revenue = r["get_metric"]
    assert (revenue.metric_name, revenue.window, revenue.value) == ("revenue", "1h", shop.revenue)
    assert revenue.components is not None and revenue.components["order_count"] == 3
    assert r["get_metric_count"].value == sum(shop.by_channel.values()) == 3
    assert r["get_metric_aov"].value == pytest.approx(shop.revenue / 3)

    # query, explain, paginate
    q = r["query"]
    assert isinstance(q.answer, list)
    assert {row["channel"]: row["order_count"] for row in q.answer} == shop.by_channel
    assert q.sql and q.metadata["rows_returned"] == len(q.answer) == q.metadata["total_count"] == 2
    assert q.metadata["has_more"] is False and q.metadata["next_cursor"] is None
    assert r["query_revenue"].answer == [{"revenue": shop.revenue}]
    ex = r["explain_query"]
    assert (ex.question, ex.tables_accessed) == ("revenue by channel today", ["orders"])
    assert ex.engine == "rule_based"
    assert "GROUP BY channel" in ex.sql and ex.estimated_rows is None
    pages = r["paginate"]
    assert [len(p) for p in pages] == [1, 1]
    assert {row["channel"]: row["order_count"] for p in pages for row in p} == shop.by_channel

    # search, lineage, changelog
    hits = r["search"]
    assert hits.query == "SDK Widget" and hits.results[0].id == shop.gadget
    assert hits.results[0].entity_type == "product" and shop.gadget in hits.results[0].endpoint
    lineage = r["get_lineage"]
    assert (lineage.entity_type, lineage.entity_id) == ("order", shop.orders["mixed"])
    assert "event_store" in {node.layer for node in lineage.lineage}
    changelog = r["get_changelog"]
    assert changelog.latest_version == str(shop.position)
    assert any(shop.browsed in change for change in changelog.versions[0].changes)

    # contracts, against the files
    files = {p.stem: yaml.safe_load(p.read_text()) for p in CONTRACTS.glob("*.yaml")}
    listed = {s.entity: s for s in r["list_contracts"]}
    assert set(listed) == set(files)
    for name, doc in files.items():
        stable = [v for v in doc["versions"] if v["status"] == "stable"][-1]
        assert (listed[name].version, listed[name].released, listed[name].status) == (
            str(stable["version"]), stable["released"], "stable"
        )
    old, new = _yaml_versions("order")
    order = r["get_contract"]
    assert (order.entity, order.version, order.released, order.status) == (
        "order", str(new["version"]), new["released"], "stable"
    )
    assert [(f.name, f.type, f.required, f.description) for f in order.fields] == [
        (n, f["type"], f["required"], f["description"]) for n, f in new["fields"].items()
    ]
    assert next(f for f in order.fields if f.name == "status").values == new["fields"]["status"]["enum"]
    assert order.breaking_changes == []
    first = r["get_contract_version"]
    assert (first.version, first.status) == (str(old["version"]), "deprecated")
    assert first.released == old["released"]
    assert [f.name for f in first.fields] == list(old["fields"])
    diff = r["diff_contracts"]
    assert (diff.entity, diff.from_version, diff.to_version, diff.breaking_changes) == (
        "order", "1.0.0", "1.1.0", []
    )
    added = {(c["type"], c["field"]) for c in diff.additive_changes}
    assert ("enum_value_added", "status") in added
    assert {("field_added", n) for n in set(new["fields"]) - set(old["fields"])} <= added
    major, minor = r["validate_contract"], r["validate_contract_minor"]
    for v, version in ((major, "2.0.0"), (minor, "1.2.0")):
        assert (v.entity, v.base_version, v.candidate_version, v.is_breaking) == (
            "order", str(new["version"]), version, True
        )
        assert [(c["type"], c["field"]) for c in v.breaking_changes] == [("field_removed", "channel")]
        assert ("field_added", "gift_note") in {(c["type"], c["field"]) for c in v.safe_changes}
    assert major.requires_version_bump is False and minor.requires_version_bump is True

    # health, freshness, catalog
    health = r["health"]
    assert health.status == "healthy" and health.freshness_seconds is not None
    assert r["is_fresh"] is True
    catalog = r["catalog"]
    assert catalog.metrics["revenue"].contract_version == listed["revenue"].version
    assert set(catalog.entities) == {n for n, d in files.items() if d["kind"] == "entity"}
    assert catalog.entities["order"].primary_key == "order_id"

    # batch: the builders' requests, answered as the direct calls are
    assert r["batch_entity"] == {
        "id": "e", "type": "entity",
        "params": {"entity_type": "order", "entity_id": shop.orders["two_gadgets"]},
    }
    assert r["batch_metric"] == {"id": "m", "type": "metric", "params": {"name": "revenue", "window": "1h"}}
    assert r["batch_query"]["params"] == {"question": REVENUE, "context": {"agent": "sdk-test"}}
    results = {item["id"]: item for item in r["batch"]["results"]}
    assert {item["status"] for item in results.values()} == {"ok"}
    assert results["e"]["data"]["data"]["total_amount"] == 25.0
    assert results["m"]["data"]["value"] == shop.revenue
    assert results["q"]["data"]["answer"] == [{"revenue": shop.revenue}]

    # we send no API version headers: the SDK reads them as absent
    for prop in VERSION_HEADERS:
        assert r[prop] is None


def test_sync_client(server: AgentFlowProcess, shop: Shop) -> None:
    _check(_sync_calls(server.base, shop), shop, AgentFlowClient)
    c = AgentFlowClient(server.base, KEY_A)
    try:
        assert c.is_fresh(max_age_seconds=0) is False  # no event is younger than 0 s
    finally:
        c._client.close()


def test_async_client(server: AgentFlowProcess, shop: Shop) -> None:
    assert inspect.iscoroutinefunction(AsyncAgentFlowClient.query)
    _check(asyncio.run(_async_calls(server.base, shop)), shop, AsyncAgentFlowClient)

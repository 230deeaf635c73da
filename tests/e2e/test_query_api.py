"""POST /v1/query and /v1/query/explain through HTTP on a real embedded `agentflow up`."""

from __future__ import annotations

from typing import Any

import httpx


def _ok(resp: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    return body


def _shop(api: httpx.Client, n_orders: int, channel: str) -> tuple[list[str], int]:
    pid = _ok(
        api.post("/v1/products", json={"name": "Q", "category": "qcat", "price": "10.00", "currency": "USD"}),
        201,
    )["product_id"]
    _ok(api.post(f"/v1/products/{pid}/restock", json={"quantity": 1000}))
    user = _ok(api.post("/v1/users", json={"name": "Q", "region": "eu"}), 201)["user_id"]
    orders, position = [], 0
    for i in range(n_orders):
        body = _ok(
            api.post(
                "/v1/orders",
                json={
                    "user_id": user,
                    "currency": "USD",
                    "channel": channel,
                    "lines": [{"product_id": pid, "quantity": 1 + i % 3, "unit_price": "10.00"}],
                },
            ),
            201,
        )
        orders.append(body["order_id"])
        position = body["position"]
    return orders, position


def _query(api: httpx.Client, body: dict[str, Any], position: int, status: int = 200) -> dict[str, Any]:
    return _ok(api.post("/v1/query", params={"min_position": position}, json=body), status)


def test_query_modes_are_tenant_scoped(api: httpx.Client, api_b: httpx.Client) -> None:
    a_orders, _ = _shop(api, 7, "qweb")
    b_orders, position = _shop(api_b, 4, "qapp")

    # guarded SQL: the tenant comes from the key, whatever the WHERE says
    sql = "SELECT order_id, tenant_id FROM orders WHERE tenant_id = 'tenant-b' OR 1 = 1 ORDER BY order_id"
    a = _query(api, {"sql": sql}, position)
    b = _query(api_b, {"sql": sql}, position)
    assert {r["tenant_id"] for r in a["rows"]} == {"tenant-a"}
    assert {r["tenant_id"] for r in b["rows"]} == {"tenant-b"}
    assert set(a_orders) <= {r["order_id"] for r in a["rows"]}
    assert not set(b_orders) & {r["order_id"] for r in a["rows"]} - set(a_orders)
    assert a["columns"] == ["order_id", "tenant_id"] and a["meta"]["as_of_position"] >= position
    assert "{tenant:String}" in a["sql"] and a["meta"]["tables"] == ["orders"]
    assert a["metadata"]["rows_returned"] == len(a["rows"]) == a["page_size"] == a["total_count"]

    # keyset pages: everything once, in order
    seen: list[str] = []
    cursor = None
    for _ in range(50):
        page = _query(
            api, {"sql": "SELECT order_id FROM orders ORDER BY order_id", "limit": 3, "cursor": cursor}, 0
        )
        seen += [r["order_id"] for r in page["rows"]]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
    assert seen == sorted(r["order_id"] for r in a["rows"])
    # a cursor of tenant A is refused for tenant B
    first = _query(api, {"sql": "SELECT order_id FROM orders ORDER BY order_id", "limit": 1}, 0)
    bad = _query(
        api_b,
        {"sql": "SELECT order_id FROM orders ORDER BY order_id", "cursor": first["next_cursor"]},
        0,
        400,
    )
    assert bad["error"]["code"] == "invalid_cursor"

    # semantic: the same numbers as GET /v1/metrics
    sem = _query(
        api, {"metrics": ["revenue", "order_count"], "dimensions": ["channel"], "window": "1h"}, position
    )
    assert sem["columns"] == ["channel", "revenue", "order_count"]
    row = next(r for r in sem["rows"] if r["channel"] == "qweb")
    metric = _ok(
        api.get("/v1/metrics/revenue", params={"window": "1h", "channel": "qweb", "currency": "USD"})
    )
    assert row["revenue"] == metric["value"] and row["order_count"] == 7
    assert "qapp" not in {r["channel"] for r in sem["rows"]}

    # a question
    ans = _query(api_b, {"question": "How many orders by channel in the last hour?"}, position)
    assert ans["interpretation"]["metrics"] == ["order_count"] and ans["interpretation"]["window"] == "1h"
    assert {r["channel"]: r["order_count"] for r in ans["rows"]}.get("qapp") == 4
    assert "qweb" not in {r["channel"] for r in ans["rows"]}
    assert ans["answer_text"].startswith("order_count") and ans["answer"] == ans["rows"]


def test_refusals_are_400_with_suggestions(api: httpx.Client) -> None:
    q = _query(api, {"question": "revenu by chanel"}, 0, 400)
    assert q["error"]["code"] == "unmapped_question"
    assert "revenue" in q["error"]["details"]["suggestions"]["revenu"]
    s = _query(api, {"metrics": ["revenue"], "dimensions": ["colour"]}, 0, 400)
    assert s["error"]["code"] == "unknown_dimension"
    for sql in [
        "SELECT * FROM system.tables",
        "SELECT * FROM url('http://127.0.0.1/', CSV)",
        "DROP TABLE orders",
        "SELECT 1; SELECT 2",
        "SELECT * FROM agentflow.orders",
        "SELECT dictGet('d', 'a', 1)",
        "SELECT * FROM orders SETTINGS readonly = 0",
    ]:
        err = _query(api, {"sql": sql}, 0, 400)
        assert err["detail"] and err["error"]["code"], sql
    failed = _query(api, {"sql": "SELECT no_such_column FROM orders"}, 0, 400)
    assert failed["error"]["code"] == "query_failed" and "FINAL" not in failed["detail"]
    assert api.post("/v1/query", json={"sql": "SELECT 1", "question": "x"}).status_code == 422
    assert api.post("/v1/query", json={"sql": "SELECT 1", "limit": 0}).status_code == 422
    assert httpx.post(f"{api.base_url}/v1/query", json={"sql": "SELECT 1"}).status_code == 401


def test_explain_shows_sql_and_tables(api: httpx.Client) -> None:
    sql = _ok(
        api.post(
            "/v1/query/explain",
            json={"sql": "SELECT o.order_id, u.region FROM orders o JOIN users u USING user_id"},
        )
    )
    assert sql["tables_accessed"] == ["orders", "users"]
    assert sql["tables"] == ["orders", "users"] and sql["sql"].count("WHERE tenant_id = {tenant:String}") == 2
    sem = _ok(api.post("/v1/query/explain", json={"question": "units sold by category past week"}))
    assert sem["interpretation"]["metrics"] == ["units_sold"] and sem["tables"] == ["order_lines"]
    assert "GROUP BY category" in sem["sql"]
    assert _ok(api.post("/v1/query/explain", json={"sql": "SELECT * FROM system.one"}), 400)

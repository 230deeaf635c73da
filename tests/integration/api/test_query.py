"""POST /v1/query and /v1/query/explain in process: guarded SQL, semantic queries and questions, paged,
scoped to the caller's tenant; refusals are 400 with a code, malformed bodies 422."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

from .conftest import A, B
from .shop_commands import ok, order, product, user

SQL = "SELECT order_id FROM orders ORDER BY order_id"


def _query(
    c: TestClient[Any], h: dict[str, str], body: dict[str, Any], status: int = 200, **params: Any
) -> Any:
    return ok(c.post("/v1/query", json=body, params=params, headers=h), status)


def _shop(c: TestClient[Any], h: dict[str, str], n: int, channel: str) -> tuple[list[str], int]:
    pid, _ = product(c, h, "Q", category="qcat")
    uid, _ = user(c, h, "Q")
    orders, position = [], 0
    for i in range(n):
        oid, position = order(c, h, uid, pid, quantity=1 + i % 3, channel=channel)
        orders.append(oid)
    return orders, position


def test_sql_is_tenant_scoped_and_keyset_paged(client: TestClient[Any]) -> None:
    a_orders, _ = _shop(client, A, 5, "qweb")
    b_orders, position = _shop(client, B, 3, "qapp")
    sql = "SELECT order_id, tenant_id FROM orders WHERE tenant_id = 'tenant-b' OR 1 = 1 ORDER BY order_id"
    a = _query(client, A, {"sql": sql}, min_position=position)
    assert {r["tenant_id"] for r in a["rows"]} == {"tenant-a"} and set(a_orders) <= {
        r["order_id"] for r in a["rows"]
    }
    assert a["mode"] == "sql" and a["columns"] == ["order_id", "tenant_id"] and a["answer_text"] is None
    assert a["answer"] == a["rows"]  # existing clients read the answer as a list of rows (API.md)
    assert "{tenant:String}" in a["sql"] and a["tables"] == ["orders"] and a["meta"]["tables"] == ["orders"]
    assert a["metadata"]["rows_returned"] == len(a["rows"]) == a["page_size"] == a["total_count"]
    assert a["meta"]["as_of_position"] >= position and a["meta"]["mode"] == "sql" and not a["has_more"]
    assert a["meta"]["is_historical"] is False and "stale" not in a["meta"]
    b = _query(client, B, {"sql": sql}, min_position=position)
    b_rows = {r["order_id"] for r in b["rows"]}
    assert set(b_orders) <= b_rows and not b_rows & set(a_orders)
    seen: list[str] = []
    cursor = None
    while True:
        page = _query(client, A, {"sql": SQL, "limit": 2, "cursor": cursor})
        seen += [r["order_id"] for r in page["rows"]]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
    assert seen == sorted(r["order_id"] for r in a["rows"])
    first = _query(client, A, {"sql": SQL, "limit": 1})
    refused = _query(client, B, {"sql": SQL, "cursor": first["next_cursor"]}, 400)
    assert refused["error"]["code"] == "invalid_cursor"


def test_semantic_queries_and_questions_match_the_metric_endpoint(client: TestClient[Any]) -> None:
    _shop(client, A, 1, "sother")
    _, a_pos = _shop(client, A, 4, "sweb")
    _, position = _shop(client, B, 2, "sapp")
    body = {"metrics": ["revenue", "order_count"], "dimensions": ["channel"], "window": "1h"}
    sem = _query(client, A, body, min_position=max(a_pos, position))
    assert sem["mode"] == "metrics" and sem["columns"] == ["channel", "revenue", "order_count"]
    row = next(r for r in sem["rows"] if r["channel"] == "sweb")
    params = {"window": "1h", "channel": "sweb", "currency": "USD"}
    metric = ok(client.get("/v1/metrics/revenue", params=params, headers=A))
    assert row["revenue"] == metric["value"] and row["order_count"] == 4
    assert "sapp" not in {r["channel"] for r in sem["rows"]}
    assert sem["units"]["order_count"] and sem["interpretation"]["metrics"] == ["revenue", "order_count"]
    assert sem["answer_text"].startswith("revenue, order_count over the last 1h")
    assert sem["answer"] == sem["rows"]
    # offset pages of a semantic result, bound to the query and the tenant
    by_channel = {"metrics": ["order_count"], "dimensions": ["channel"]}
    one = _query(client, A, {**by_channel, "limit": 1})
    assert one["has_more"] and one["total_count"] >= 2 and len(one["rows"]) == 1  # sweb and sother
    rest = _query(client, A, {**by_channel, "cursor": one["next_cursor"]})
    assert one["rows"][0] not in rest["rows"] and len(rest["rows"]) == one["total_count"] - 1
    other = _query(client, B, {**by_channel, "cursor": one["next_cursor"]}, 400)
    assert other["error"]["code"] == "invalid_cursor"
    assert _query(client, A, {**by_channel, "cursor": "%%%"}, 400)["error"]["code"] == "invalid_cursor"
    # a metric computed without SQL here answers as GET /v1/metrics does
    err = _query(client, A, {"metrics": ["error_rate"], "window": "1h"})
    direct = ok(client.get("/v1/metrics/error_rate", params={"window": "1h"}, headers=A))
    assert err["rows"][0]["error_rate"] == direct["value"]
    ans = _query(
        client, B, {"question": "How many orders by channel in the last hour?"}, min_position=position
    )
    assert ans["mode"] == "question" and ans["interpretation"]["metrics"] == ["order_count"]
    assert {r["channel"]: r["order_count"] for r in ans["rows"]}.get("sapp") == 2
    assert "sweb" not in {r["channel"] for r in ans["rows"]}


def test_refusals_are_400_and_malformed_bodies_422(client: TestClient[Any]) -> None:
    q = _query(client, A, {"question": "revenu by chanel"}, 400)
    assert (
        q["error"]["code"] == "unmapped_question"
        and "revenue" in q["error"]["details"]["suggestions"]["revenu"]
    )
    assert _query(client, A, {"metrics": ["revenue"], "dimensions": ["colour"]}, 400)["error"]["code"] == (
        "unknown_dimension"
    )
    assert _query(client, A, {"metrics": "nope"}, 400)["error"]["code"] == "unknown_metric"
    assert _query(client, A, {"metrics": [1]}, 400)["error"]["code"] == "invalid_query"
    for sql in ["SELECT * FROM system.tables", "DROP TABLE orders", "SELECT 1; SELECT 2"]:
        err = _query(client, A, {"sql": sql}, 400)
        assert err["detail"] and err["error"]["code"], sql
    failed = _query(client, A, {"sql": "SELECT no_such_column FROM orders"}, 400)
    assert failed["error"]["code"] == "query_failed" and "FINAL" not in failed["detail"]
    assert _query(client, A, {"sql": SQL, "cursor": 5}, 400)["error"]["code"] == "invalid_cursor"
    for body, code in [
        ({"sql": "SELECT 1", "question": "x"}, "invalid_query"),
        ({}, "invalid_query"),
        ({"context": {"user": "x"}}, "invalid_query"),
        ({"sql": "SELECT 1", "limit": 0}, "invalid_limit"),
        ({"sql": "SELECT 1", "limit": True}, "invalid_limit"),
        ({"sql": "SELECT 1", "limit": 10_001}, "invalid_limit"),
    ]:
        assert _query(client, A, body, 422)["error"]["code"] == code, body
    assert client.post("/v1/query", json=[1], headers=A).status_code == 422
    assert client.post("/v1/query", json={"sql": "SELECT 1"}).status_code == 401
    r = client.post(
        "/v1/query", json={"sql": SQL}, params={"min_position": 10**12, "timeout_ms": 0}, headers=A
    )
    assert r.status_code == 503 and r.json()["error"]["code"] == "position_not_yet_applied"
    stale = _query(client, A, {"sql": SQL}, min_position=10**12, timeout_ms=0, allow_stale="true")
    assert stale["meta"]["stale"] is True


def test_explain_shows_sql_and_tables_without_running(client: TestClient[Any]) -> None:
    join = "SELECT o.order_id, u.region FROM orders o JOIN users u USING user_id"
    sql = ok(client.post("/v1/query/explain", json={"sql": join}, headers=A))
    assert sql["mode"] == "sql" and sql["tables"] == sql["tables_accessed"] == ["orders", "users"]
    assert sql["question"] is None and sql["engine"] == "guarded_sql"
    assert sql["sql"].count("WHERE tenant_id = {tenant:String}") == 2 and sql["parameters"]["tenant"]
    sem = ok(
        client.post("/v1/query/explain", json={"question": "units sold by category past week"}, headers=A)
    )
    assert sem["interpretation"]["metrics"] == ["units_sold"] and sem["tables"] == ["order_lines"]
    assert "GROUP BY category" in sem["sql"] and sem["queries"][0]["metric"] == "units_sold"
    assert sem["question"] == "units sold by category past week" and sem["engine"] == "rule_based"
    assert sem["tables_accessed"] == ["order_lines"]
    bespoke = ok(
        client.post("/v1/query/explain", json={"metrics": ["active_sessions"], "window": "now"}, headers=A)
    )
    assert bespoke["queries"][0]["computed_by"] == "GET /v1/metrics/active_sessions"
    assert bespoke["question"] is None and bespoke["engine"] == "semantic_layer"
    assert (
        client.post("/v1/query/explain", json={"sql": "SELECT * FROM system.one"}, headers=A).status_code
        == 400
    )
    assert client.post("/v1/query/explain", json={"limit": 5}, headers=A).status_code == 422
    assert client.post("/v1/query/explain", json={"sql": "SELECT 1"}).status_code == 401

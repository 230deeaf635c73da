"""POST /v1/batch in process: each item answered as its own route answers it, in order, as the caller."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

from .conftest import A, B
from .shop_commands import ok, product


def _batch(c: TestClient[Any], h: dict[str, str], requests: list[Any]) -> dict[str, Any]:
    return ok(c.post("/v1/batch", json={"requests": requests}, headers=h))


def test_batch_items_answer_as_their_routes_do(client: TestClient[Any]) -> None:
    pid, pos = product(client, A, "Batchable")
    direct = ok(client.get(f"/v1/entity/product/{pid}", params={"min_position": pos}, headers=A))
    requests = [
        {
            "id": "p",
            "type": "entity",
            "params": {"entity_type": "product", "entity_id": pid, "min_position": pos},
        },
        {"id": "m", "type": "metric", "params": {"name": "order_count", "window": "1h"}},
        {
            "id": "q",
            "type": "query",
            "params": {"sql": "SELECT product_id FROM products ORDER BY product_id"},
        },
        {"id": "missing", "type": "entity", "params": {"entity_type": "product", "entity_id": "PROD-999999"}},
        {"id": "badwin", "type": "metric", "params": {"name": "revenue", "window": "3y"}},
        {"id": "badtype", "type": "teleport", "params": {}},
        {"id": "noid", "type": "entity", "params": {"entity_type": "product"}},
        {"id": "unsafe", "type": "entity", "params": {"entity_type": "product", "entity_id": "../health"}},
        {"id": 7, "type": "metric", "params": "window=1h"},
        "not an object",
        {"type": "metric", "params": {"metric_name": "order_count"}},
    ]
    body = _batch(client, A, requests)
    assert isinstance(body["duration_ms"], float)
    results = body["results"]
    assert [r["id"] for r in results] == [
        "p",
        "m",
        "q",
        "missing",
        "badwin",
        "badtype",
        "noid",
        "unsafe",
        "7",
        "9",
        "10",
    ]
    by_id = {r["id"]: r for r in results}
    p = by_id["p"]
    assert p["status"] == "ok" and p["status_code"] == 200 and p["error"] is None and "error_code" not in p
    assert p["data"]["data"] == direct["data"] and p["data"]["entity_id"] == pid and p["duration_ms"] >= 0
    m = by_id["m"]
    assert m["status"] == "ok" and m["data"]["metric_name"] == "order_count" and m["data"]["window"] == "1h"
    assert by_id["q"]["status"] == "ok" and {"product_id": pid} in by_id["q"]["data"]["rows"]
    missing = by_id["missing"]
    assert missing == {
        **missing,
        "status": "error",
        "status_code": 404,
        "data": None,
        "error_code": "entity_not_found",
    }
    assert "not found" in missing["error"]
    badwin = by_id["badwin"]
    assert (
        badwin["status_code"] == 422 and badwin["error_code"] == "invalid_window" and badwin["data"] is None
    )
    for item_id, fragment in [("badtype", "type must be"), ("noid", "entity_id"), ("unsafe", "entity_id"),
                              ("7", "params must be an object"), ("9", "must be an object")]:  # fmt: skip
        r = by_id[item_id]
        assert r["status"] == "error" and r["status_code"] == 422 and r["error_code"] == "invalid_item", r
        assert fragment in r["error"] and r["data"] is None and "duration_ms" not in r
    assert by_id["10"]["status"] == "ok" and by_id["10"]["data"]["window"] == "1h"  # id: its index


def test_batch_items_run_as_the_callers_tenant(client: TestClient[Any]) -> None:
    pid, pos = product(client, A, "Tenanted")
    item = {
        "id": "p",
        "type": "entity",
        "params": {"entity_type": "product", "entity_id": pid, "min_position": pos},
    }
    assert _batch(client, A, [item])["results"][0]["status"] == "ok"
    other = _batch(client, B, [item])["results"][0]
    assert other["status"] == "error" and other["status_code"] == 404


def test_batch_bounds_and_malformed_bodies(client: TestClient[Any]) -> None:
    many = [{"id": str(i), "type": "metric", "params": {"name": "order_count"}} for i in range(21)]
    r = client.post("/v1/batch", json={"requests": many}, headers=A)
    assert r.status_code == 422 and r.json()["error"]["code"] == "batch_too_large"
    assert r.json()["error"]["details"] == {"max": 20, "received": 21}
    full = _batch(client, A, many[:20])
    assert len(full["results"]) == 20 and all(x["status"] == "ok" for x in full["results"])
    assert _batch(client, A, [])["results"] == []
    for bad in ({"nope": []}, {"requests": "all"}, [1]):
        r = client.post("/v1/batch", json=bad, headers=A)
        assert r.status_code == 422 and r.json()["detail"], bad
    r = client.post("/v1/batch", content=b"{not json", headers={**A, "content-type": "application/json"})
    assert r.status_code == 422
    assert client.post("/v1/batch", json={"requests": []}, headers={"X-API-Key": "bad"}).status_code == 401


def test_a_batch_is_measured_once_not_per_item(client: TestClient[Any]) -> None:
    def totals() -> tuple[int, int]:
        slos = {s["name"]: s for s in ok(client.get("/v1/slo", headers=A))["slos"]}
        return slos["api_read_latency"]["events"]["total"], slos["api_query_latency"]["events"]["total"]

    reads, queries = totals()
    items = [{"id": str(i), "type": "metric", "params": {"name": "order_count"}} for i in range(3)]
    _batch(client, A, items)
    # the /v1/slo read above counted as it left; the batch counts as one query, its items not at all
    assert totals() == (reads + 1, queries + 1)

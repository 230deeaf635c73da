"""``GET /v1/entity/{type}/{id}`` and ``GET /v1/catalog`` over HTTP, in process."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from litestar.testing import TestClient

from .conftest import A, B
from .shop import ok, order, product, user


def test_an_entity_now_and_as_of_an_instant(client: TestClient[Any]) -> None:
    registered = ok(
        client.post(
            "/v1/products",
            json={"name": "Clock", "category": "home", "price": "3", "currency": "USD"},
            headers=A,
        ),
        201,
    )
    pid = registered["product_id"]
    ok(
        client.get(f"/v1/entity/product/{pid}", params={"min_position": registered["position"]}, headers=A),
        200,
    )
    between = datetime.now(UTC)
    restocked = ok(client.post(f"/v1/products/{pid}/restock", json={"quantity": 9}, headers=A), 200)
    now = ok(
        client.get(f"/v1/entity/product/{pid}", params={"min_position": restocked["position"]}, headers=A),
        200,
    )
    assert set(now) == {"entity_type", "entity_id", "data", "last_updated", "freshness_seconds", "meta"}
    assert (now["entity_type"], now["entity_id"]) == ("product", pid)
    data = now["data"]
    assert (data["product_id"], data["name"], data["category"], data["price"]) == (pid, "Clock", "home", 3.0)
    assert data["stock_quantity"] == 9 and data["in_stock"] is True
    assert now["meta"]["is_historical"] is False and now["meta"]["as_of_position"] >= restocked["position"]
    assert now["freshness_seconds"] == now["meta"]["freshness_seconds"]
    then = ok(client.get(f"/v1/entity/product/{pid}", params={"as_of": between.isoformat()}, headers=A), 200)
    assert then["data"]["stock_quantity"] == 0 and then["meta"]["is_historical"] is True
    long_ago = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    r = client.get(f"/v1/entity/product/{pid}", params={"as_of": long_ago}, headers=A)
    assert r.status_code == 404 and r.json()["error"]["code"] == "entity_not_found"
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    r = client.get(f"/v1/entity/product/{pid}", params={"as_of": future}, headers=A)
    assert r.status_code == 422 and r.json()["error"]["code"] == "as_of_in_future"


def test_orders_and_users(client: TestClient[Any]) -> None:
    pid = product(client, A, price="4.50")["product_id"]
    uid = user(client, A)
    placed = order(client, A, pid, uid, quantity=2, unit_price="4.50")
    oid = placed["order_id"]
    got = ok(
        client.get(f"/v1/entity/order/{oid}", params={"min_position": placed["position"]}, headers=A), 200
    )
    data = got["data"]
    assert (data["order_id"], data["user_id"], data["status"], data["currency"]) == (
        oid,
        uid,
        "pending",
        "USD",
    )
    assert data["total_amount"] == 9.0
    buyer = ok(
        client.get(f"/v1/entity/user/{uid}", params={"min_position": placed["position"]}, headers=A), 200
    )
    assert buyer["data"]["user_id"] == uid and buyer["data"]["total_orders"] == 1


def test_unknown_types_ids_and_tenants(client: TestClient[Any]) -> None:
    pid = product(client, A)
    r = client.get("/v1/entity/planet/P-1", headers=A)
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_entity_type"
    assert "order" in r.json()["error"]["details"]["available"]
    r = client.get("/v1/entity/order/ORD-20000101-0001", headers=A)
    assert r.status_code == 404 and r.json()["error"]["code"] == "entity_not_found" and r.json()["detail"]
    ok(
        client.get(
            f"/v1/entity/product/{pid['product_id']}", params={"min_position": pid["position"]}, headers=A
        ),
        200,
    )
    theirs = client.get(
        f"/v1/entity/product/{pid['product_id']}", params={"min_position": pid["position"]}, headers=B
    )
    assert theirs.status_code == 404  # tenant B has no such product
    far = client.get(
        f"/v1/entity/product/{pid['product_id']}", params={"min_position": 10**12, "timeout_ms": 0}, headers=A
    )
    assert far.status_code == 503 and far.json()["error"]["code"] == "position_not_yet_applied"
    assert client.get(f"/v1/entity/product/{pid['product_id']}").status_code == 401


def test_catalog(client: TestClient[Any]) -> None:
    catalog = ok(client.get("/v1/catalog", headers=A), 200)
    assert set(catalog) == {"entities", "metrics", "streaming_sources", "audit_sources"}
    assert set(catalog["entities"]) == {"order", "user", "product", "session"}
    assert catalog["entities"]["order"]["primary_key"] == "order_id"
    revenue = catalog["metrics"]["revenue"]
    assert revenue["unit"] and revenue["available_windows"] and revenue["source_events"]
    assert revenue["contract_version"] == "1.1.0" and "channel" in revenue["dimensions"]
    assert isinstance(revenue["freshness_budget_seconds"], int)  # as the contract states it
    assert catalog["audit_sources"]["events"]["path"].startswith("/v1/entity/")
    assert client.get("/v1/catalog").status_code == 401

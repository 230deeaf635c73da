"""Drives a real `agentflow up` over HTTP and checks reads against an independent computation.

The tests share one server (and tenant) in any order, and the distributed suite runs some of them
beside its own: tenant-wide metrics are compared with their values read at the start of the test.
"""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from agentflow_process import AgentFlowProcess

from e2e.conftest import recorded_instant


def _ok(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    return body


def _metric(api: httpx.Client, name: str, position: int, **params: str) -> dict[str, Any]:
    return _ok(api.get(f"/v1/metrics/{name}", params={"min_position": position, **params}), 200)


def test_commands_move_metrics_and_entities_exactly(api: httpx.Client, api_b: httpx.Client) -> None:
    rng = random.Random(7)
    products: dict[str, tuple[str, Decimal, str]] = {}
    position = 0
    for i, (cur, price_text) in enumerate([("USD", "19.99"), ("USD", "5.25"), ("EUR", "42.00")]):
        body = _ok(
            api.post(
                "/v1/products",
                json={"name": f"P{i}", "category": f"cat{i % 2}", "price": price_text, "currency": cur},
            ),
            201,
        )
        pid = body["product_id"]
        assert pid.startswith("PROD-")
        position = _ok(api.post(f"/v1/products/{pid}/restock", json={"quantity": 500}), 200)["position"]
        products[pid] = (cur, Decimal(price_text), f"cat{i % 2}")
    user = _ok(api.post("/v1/users", json={"name": "Ada", "region": "eu-central"}), 201)["user_id"]
    assert user.startswith("USR-")
    # the tenant's values before this test's orders (other tests of the server may have placed some)
    base_revenue = _metric(api, "revenue", position, window="1h", currency="USD")
    base_eur = base_revenue["components"]["by_currency"].get("EUR", 0)
    base_count = _metric(api, "order_count", position, window="1h")["value"]
    base_aov = _metric(api, "avg_order_value", position, window="1h", currency="USD")["components"]
    base_b = _ok(api_b.get("/v1/metrics/order_count", params={"window": "1h"}), 200)["value"]

    expected_rev: dict[str, Decimal] = defaultdict(Decimal)
    expected_count = 0
    units_by_category: dict[str, int] = defaultdict(int)
    last_position = 0
    order_ids: list[tuple[str, str, Decimal, str, int]] = []
    for _ in range(12):
        pid = rng.choice(list(products))
        currency, price, category = products[pid]
        qty = rng.randint(1, 4)
        body = _ok(
            api.post(
                "/v1/orders",
                json={
                    "user_id": user,
                    "currency": currency,
                    "channel": "web",
                    "lines": [{"product_id": pid, "quantity": qty, "unit_price": str(price)}],
                },
            ),
            201,
        )
        assert body["order_id"].startswith("ORD-") and body["stream_version"] == 1
        order_ids.append((body["order_id"], currency, price * qty, category, qty))
        last_position = body["position"]
    # cancel two orders: they leave revenue and order_count
    for oid, *_ in order_ids[:2]:
        last_position = _ok(api.post(f"/v1/orders/{oid}/cancel", json={"reason": "changed mind"}), 200)[
            "position"
        ]
    for _oid, currency, total, category, qty in order_ids[2:]:
        expected_rev[currency] += total
        expected_count += 1
        units_by_category[category] += qty

    revenue = _metric(api, "revenue", last_position, window="1h", currency="USD")
    assert revenue["metric_name"] == "revenue" and revenue["window"] == "1h"
    assert revenue["meta"]["as_of_position"] >= last_position
    assert abs(revenue["value"] - (base_revenue["value"] + float(expected_rev["USD"]))) < 1e-6
    eur = revenue["components"]["by_currency"].get("EUR", 0)
    assert abs(eur - (base_eur + float(expected_rev["EUR"]))) < 1e-6
    count = _metric(api, "order_count", last_position, window="1h")
    assert count["value"] == base_count + expected_count
    aov = _metric(api, "avg_order_value", last_position, window="1h", currency="USD")
    usd_orders = sum(1 for o in order_ids[2:] if o[1] == "USD")
    assert aov["components"]["order_count"] == base_aov["order_count"] + usd_orders
    if usd_orders:
        usd_total = base_aov["revenue"] + float(expected_rev["USD"])
        assert abs(aov["value"] - usd_total / (base_aov["order_count"] + usd_orders)) < 1e-6

    # the user entity is folded from their orders
    ent = _ok(api.get(f"/v1/entity/user/{user}", params={"min_position": last_position}), 200)
    assert ent["data"]["total_orders"] == expected_count
    assert ent["data"]["preferred_category"] == max(units_by_category, key=lambda c: units_by_category[c])
    assert ent["meta"]["is_historical"] is False

    # another tenant sees none of it
    assert _ok(api_b.get("/v1/metrics/order_count", params={"window": "1h"}), 200)["value"] == base_b
    assert api_b.get(f"/v1/entity/user/{user}").status_code == 404


def test_order_lifecycle_payment_and_refund(api: httpx.Client) -> None:
    pid = _ok(
        api.post(
            "/v1/products", json={"name": "Lamp", "category": "home", "price": "10.00", "currency": "USD"}
        ),
        201,
    )["product_id"]
    _ok(api.post(f"/v1/products/{pid}/restock", json={"quantity": 3}), 200)
    user = _ok(api.post("/v1/users", json={}), 201)["user_id"]
    order = _ok(
        api.post(
            "/v1/orders",
            json={
                "user_id": user,
                "currency": "USD",
                "lines": [{"product_id": pid, "quantity": 2, "unit_price": 10}],
            },
        ),
        201,
    )
    oid = order["order_id"]
    # stock is reserved: only 1 left to sell
    short = api.post(
        "/v1/orders",
        json={
            "user_id": user,
            "currency": "USD",
            "lines": [{"product_id": pid, "quantity": 2, "unit_price": "10"}],
        },
    )
    assert short.status_code == 409 and short.json()["error"]["code"] == "insufficient_stock"
    assert "detail" in short.json()
    pos = _ok(api.post(f"/v1/orders/{oid}/confirm"), 200)["position"]
    product = _ok(api.get(f"/v1/entity/product/{pid}", params={"min_position": pos}), 200)["data"]
    assert product["stock_quantity"] == 1
    unpaid = api.post(f"/v1/orders/{oid}/ship")
    assert unpaid.status_code == 409
    wrong_currency = api.post(
        "/v1/payments", json={"order_id": oid, "amount": "20", "currency": "EUR", "method": "card"}
    )
    assert wrong_currency.status_code == 409
    pay = _ok(
        api.post(
            "/v1/payments", json={"order_id": oid, "amount": "20.00", "currency": "USD", "method": "card"}
        ),
        201,
    )["payment_id"]
    _ok(api.post(f"/v1/payments/{pay}/complete"), 200)
    _ok(api.post(f"/v1/orders/{oid}/ship"), 200)
    _ok(api.post(f"/v1/orders/{oid}/deliver"), 200)
    too_much = api.post(f"/v1/orders/{oid}/refund", json={"amount": "25"})
    assert too_much.status_code == 409
    pos = _ok(api.post(f"/v1/orders/{oid}/refund", json={"amount": "20"}), 200)["position"]
    data = _ok(api.get(f"/v1/entity/order/{oid}", params={"min_position": pos}), 200)["data"]
    assert data["status"] == "refunded" and data["total_amount"] == 20.0 and data["currency"] == "USD"


def test_errors_idempotency_and_if_match(api: httpx.Client) -> None:
    bad = api.post("/v1/orders", json={"user_id": "", "currency": "XXX", "lines": []})
    assert bad.status_code == 422
    assert bad.json()["error"]["details"], bad.text
    assert api.get("/v1/metrics/nope").status_code == 404
    assert api.get("/v1/metrics/revenue", params={"window": "3w"}).status_code == 422
    assert api.get("/v1/entity/order/ORD-NOPE").status_code == 404
    assert httpx.get(f"{api.base_url}/v1/metrics/revenue").status_code == 401

    key = str(uuid.uuid4())
    body = {"name": "Mug", "category": "home", "price": "7.5", "currency": "GBP"}
    first = _ok(api.post("/v1/products", json=body, headers={"Idempotency-Key": key}), 201)
    again = _ok(api.post("/v1/products", json=body, headers={"Idempotency-Key": key}), 201)
    assert again == first
    other = api.post("/v1/products", json={**body, "price": "8"}, headers={"Idempotency-Key": key})
    assert other.status_code == 422

    pid = first["product_id"]
    conflict = api.post(f"/v1/products/{pid}/restock", json={"quantity": 1}, headers={"If-Match": "7"})
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "version_conflict"
    assert conflict.json()["error"]["details"]["current_version"] == 1
    _ok(api.post(f"/v1/products/{pid}/restock", json={"quantity": 1}, headers={"If-Match": '"1"'}), 200)


def test_restart_keeps_data(server: AgentFlowProcess, api: httpx.Client) -> None:
    user = _ok(api.post("/v1/users", json={"name": "Kept"}), 201)
    server.stop()
    server.start()
    ent = api.get(f"/v1/entity/user/{user['user_id']}", params={"min_position": user["position"]})
    assert _ok(ent, 200)["data"]["name"] == "Kept"
    assert ent.json()["meta"]["as_of_position"] >= user["position"]
    health = _ok(api.get("/v1/health"), 200)
    assert {c["name"] for c in health["components"]} >= {"event_store", "read_models", "freshness"}


def test_catalog_lists_every_metric_and_entity(api: httpx.Client) -> None:
    catalog = _ok(api.get("/v1/catalog"), 200)
    assert set(catalog["entities"]) == {"order", "user", "product", "session"}
    for name in (
        "revenue",
        "order_count",
        "avg_order_value",
        "conversion_rate",
        "active_sessions",
        "error_rate",
    ):
        metric = catalog["metrics"][name]
        assert metric["source_events"] and metric["available_windows"] and metric["unit"]
        # every advertised window is served
        assert (
            api.get(f"/v1/metrics/{name}", params={"window": metric["available_windows"][-1]}).status_code
            == 200
        )
    assert catalog["entities"]["order"]["primary_key"] == "order_id"


def test_entity_as_of_folds_the_store_up_to_that_instant(api: httpx.Client) -> None:
    registered = _ok(
        api.post("/v1/products", json={"name": "Clock", "category": "home", "price": "3", "currency": "USD"}),
        201,
    )
    pid = registered["product_id"]
    before_restock = recorded_instant(api, registered["position"])
    pos = _ok(api.post(f"/v1/products/{pid}/restock", json={"quantity": 9}), 200)["position"]
    now = _ok(api.get(f"/v1/entity/product/{pid}", params={"min_position": pos}), 200)
    assert now["data"]["stock_quantity"] == 9 and now["meta"]["is_historical"] is False
    then = _ok(api.get(f"/v1/entity/product/{pid}", params={"as_of": before_restock}), 200)
    assert then["data"]["stock_quantity"] == 0 and then["meta"]["is_historical"] is True
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert api.get(f"/v1/entity/product/{pid}", params={"as_of": future}).status_code == 422
    long_ago = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    assert api.get(f"/v1/entity/product/{pid}", params={"as_of": long_ago}).status_code == 404

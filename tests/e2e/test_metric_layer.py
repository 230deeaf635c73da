"""The metric layer over HTTP on a real `agentflow up`: new metrics read their own writes (including
the lazily written tables), series, dimension filters, contracts and the contract-built catalog."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import httpx


def _ok(resp: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    return body


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _order(api: httpx.Client, user: str, pid: str, channel: str) -> str:
    body = {
        "user_id": user,
        "currency": "USD",
        "channel": channel,
        "lines": [{"product_id": pid, "quantity": 2, "unit_price": "10.00"}],
    }
    return str(_ok(api.post("/v1/orders", json=body), 201)["order_id"])


def _pay(api: httpx.Client, oid: str) -> str:
    body = {"order_id": oid, "amount": "20.00", "currency": "USD", "method": "card"}
    return str(_ok(api.post("/v1/payments", json=body), 201)["payment_id"])


def test_new_metrics_series_and_contracts_over_http(api: httpx.Client, api_b: httpx.Client) -> None:
    pid = _ok(
        api.post(
            "/v1/products", json={"name": "Mug", "category": "kitchen", "price": "10", "currency": "USD"}
        ),
        201,
    )["product_id"]
    _ok(api.post(f"/v1/products/{pid}/restock", json={"quantity": 10}))
    user = _ok(api.post("/v1/users", json={"name": "Ada"}), 201)["user_id"]
    shipped = _order(api, user, pid, "web")
    _ok(api.post(f"/v1/payments/{_pay(api, shipped)}/complete"))
    _ok(api.post(f"/v1/orders/{shipped}/confirm"))
    _ok(api.post(f"/v1/orders/{shipped}/ship"))
    failed = _order(api, user, pid, "app")
    pos = _ok(api.post(f"/v1/payments/{_pay(api, failed)}/fail", json={"reason": "declined"}))["position"]

    def metric(name: str, **params: Any) -> dict[str, Any]:
        return _ok(api.get(f"/v1/metrics/{name}", params={"min_position": pos, **params}))

    assert metric("units_sold", window="1h")["value"] == 4
    assert metric("units_sold", window="1h", category="kitchen")["value"] == 4
    assert metric("stock_on_hand", window="now", product=pid)["value"] == 6
    assert metric("payment_failure_rate", window="1h")["components"] == {"failed": 1, "settled": 2}
    assert metric("fulfilment_time_p95", window="1h")["components"]["shipped_orders"] == 1
    gmv = metric("gross_merchandise_value", window="1h", currency="USD")
    assert gmv["value"] == 40.0 and gmv["unit"] == "USD"
    assert metric("net_revenue", window="7d", channel="web")["value"] == 20.0
    assert metric("refund_rate", window="1h")["components"] == {"refunded_orders": 0, "paid_orders": 1}

    series = _ok(
        api.get("/v1/metrics/order_count/series", params={"window": "1h", "grain": "5m", "min_position": pos})
    )
    points = series["points"]
    assert series["grain"] == "5m" and set(points[0]) == {"start", "end", "value", "components"}
    # 5-minute buckets end to end, from the one holding the window's start to the one holding its end:
    # an hour is 12 grains, so 13 buckets whatever the minute (the first and last hold part of it)
    edges = [(_at(p["start"]), _at(p["end"])) for p in points]
    assert all(end - start == timedelta(minutes=5) for start, end in edges), edges
    assert all(prev[1] == nxt[0] for prev, nxt in zip(edges, edges[1:], strict=False)), edges
    assert len(points) == 13
    assert sum(p["value"] for p in points) == 2
    assert (
        api.get("/v1/metrics/order_count/series", params={"window": "5m", "grain": "1d"}).status_code == 422
    )
    assert api.get("/v1/metrics/stock_on_hand/series").status_code == 422
    bad = api.get("/v1/metrics/order_count", params={"window": "1h", "category": "kitchen"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_dimension"
    assert _ok(api_b.get("/v1/metrics/units_sold", params={"window": "1h"}))["value"] == 0

    catalog = _ok(api.get("/v1/catalog"))
    assert catalog["metrics"]["stock_on_hand"]["source_events"] == [
        "StockAdjusted",
        "StockReceived",
        "StockReleased",
        "StockReserved",
        "StockReturned",
        "StockShipped",
    ]
    assert catalog["metrics"]["revenue"]["contract_version"] == "1.1.0"
    contracts = _ok(api.get("/v1/contracts"))
    assert {c["name"] for c in contracts["contracts"]} >= set(catalog["metrics"]) | set(catalog["entities"])
    assert _ok(api.get("/v1/contracts/order/diff/1.0.0/1.1.0"))["compatibility"] == "additive"
    revenue = _ok(api.get("/v1/contracts/revenue"))
    assert revenue["version"] == "1.1.0" and "OrderPlaced" in revenue["moved_by"]
    assert _ok(api.get("/v1/contracts/revenue/1.0.0"))["status"] == "deprecated"
    doc = {k: v for k, v in revenue.items() if k not in ("current_version", "kind", "name", "versions")}
    proposal = {**doc, "version": "1.2.0", "moved_by": ["NoSuchEvent"]}
    checked = _ok(api.post("/v1/contracts/revenue/validate", json=proposal))
    assert checked["valid"] is False and "NoSuchEvent" in json.dumps(checked["errors"]), checked

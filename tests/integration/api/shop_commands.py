"""Writes through the command routes for the read-surface tests: products, users, orders, payments.

Each helper asserts the command's status and returns the ids and the ``position`` it answered (a read
may pass it as ``min_position`` to see its own write)."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient


def ok(resp: Any, status: int = 200) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    return body


def product(c: TestClient[Any], h: dict[str, str], name: str, category: str = "gadgets") -> tuple[str, int]:
    body = {"name": name, "category": category, "price": "9.50", "currency": "USD"}
    pid = str(ok(c.post("/v1/products", json=body, headers=h), 201)["product_id"])
    pos = int(ok(c.post(f"/v1/products/{pid}/restock", json={"quantity": 100}, headers=h))["position"])
    return pid, pos


def user(c: TestClient[Any], h: dict[str, str], name: str, email: str | None = None) -> tuple[str, int]:
    payload = {"name": name, "region": "eu-central", **({"email": email} if email else {})}
    body = ok(c.post("/v1/users", json=payload, headers=h), 201)
    return str(body["user_id"]), int(body["position"])


def order(
    c: TestClient[Any], h: dict[str, str], user_id: str, pid: str, quantity: int = 2, channel: str = "web"
) -> tuple[str, int]:
    payload = {
        "user_id": user_id,
        "currency": "USD",
        "channel": channel,
        "lines": [{"product_id": pid, "quantity": quantity, "unit_price": "9.50"}],
    }
    body = ok(c.post("/v1/orders", json=payload, headers=h), 201)
    return str(body["order_id"]), int(body["position"])


def act(c: TestClient[Any], h: dict[str, str], path: str, payload: dict[str, Any] | None = None) -> int:
    """A state transition (e.g. ``/v1/orders/ORD-…/confirm``); its position."""
    return int(ok(c.post(path, json=payload or {}, headers=h))["position"])


def pay(c: TestClient[Any], h: dict[str, str], order_id: str, amount: str = "19.00") -> tuple[str, int]:
    payload = {"order_id": order_id, "amount": amount, "currency": "USD", "method": "card"}
    payment = str(ok(c.post("/v1/payments", json=payload, headers=h), 201)["payment_id"])
    return payment, act(c, h, f"/v1/payments/{payment}/complete")

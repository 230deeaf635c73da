"""Commands that set up what the in-process route tests read: a stocked product, a user, an order."""

from __future__ import annotations

import uuid
from typing import Any

from litestar.testing import TestClient


def ok(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def product(
    client: TestClient[Any],
    headers: dict[str, str],
    price: str = "10.00",
    stock: int = 10,
    currency: str = "USD",
) -> dict[str, Any]:
    """A registered product with ``stock`` units: the restock's answer (product_id, position)."""
    body = {"name": "Mug", "category": f"cat-{uuid.uuid4().hex[:6]}", "price": price, "currency": currency}
    pid = ok(client.post("/v1/products", json=body, headers=headers), 201)["product_id"]
    return ok(client.post(f"/v1/products/{pid}/restock", json={"quantity": stock}, headers=headers), 200)


def user(client: TestClient[Any], headers: dict[str, str]) -> str:
    return str(ok(client.post("/v1/users", json={"name": "Ada"}, headers=headers), 201)["user_id"])


def order(
    client: TestClient[Any],
    headers: dict[str, str],
    pid: str,
    uid: str,
    quantity: int = 1,
    unit_price: str = "10.00",
    channel: str = "web",
    currency: str = "USD",
) -> dict[str, Any]:
    """A placed order: its answer (order_id, stream_version, position)."""
    body = {
        "user_id": uid,
        "currency": currency,
        "channel": channel,
        "lines": [{"product_id": pid, "quantity": quantity, "unit_price": unit_price}],
    }
    return ok(client.post("/v1/orders", json=body, headers=headers), 201)

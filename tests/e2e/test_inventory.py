"""Stock as the warehouse sees it, over HTTP on a real server (the distributed suite runs it too).

Restock 10, order 3, confirm, pay, ship, deliver: 7 on hand, none reserved. A full refund that brings
the 3 back into stock: 10 on hand. Adjustments move on-hand stock but never below what open orders hold.
``as_of`` shows each stage as it stood. The product is new to every run, so the figures are exact.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from e2e.conftest import recorded_instant


def _ok(resp: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    return body


def _refused(resp: httpx.Response, status: int, code: str) -> None:
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["code"] == code, resp.text


Stock = tuple[int, int, int, bool]  # on_hand, reserved, stock_quantity, in_stock


def _stock(api: httpx.Client, pid: str, position: int, as_of: str | None = None) -> Stock:
    params: dict[str, Any] = {"min_position": position}
    if as_of is not None:
        params["as_of"] = as_of
    data = _ok(api.get(f"/v1/entity/product/{pid}", params=params))["data"]
    return data["on_hand"], data["reserved"], data["stock_quantity"], data["in_stock"]


def _metric(api: httpx.Client, name: str, pid: str, position: int, window: str) -> dict[str, Any]:
    params = {"window": window, "product": pid, "min_position": position}
    return _ok(api.get(f"/v1/metrics/{name}", params=params))


def test_shipping_returns_and_adjustments_move_stock(api: httpx.Client) -> None:
    tag = uuid.uuid4().hex[:8]
    pid = _ok(api.post("/v1/products", json={"product_id": f"PROD-{tag}", "name": "Lamp", "category": "home",
                                             "price": "10.00", "currency": "USD"}), 201)["product_id"]
    _ok(api.post(f"/v1/products/{pid}/restock", json={"quantity": 10}))
    user = _ok(api.post("/v1/users", json={"name": "Grace"}), 201)["user_id"]
    line = {"product_id": pid, "quantity": 3, "unit_price": "10.00"}
    placed = _ok(api.post("/v1/orders", json={"user_id": user, "currency": "USD", "lines": [line]}), 201)
    oid = placed["order_id"]
    assert _stock(api, pid, placed["position"]) == (10, 3, 7, True)

    _ok(api.post(f"/v1/orders/{oid}/confirm"))
    pay = _ok(api.post("/v1/payments", json={"order_id": oid, "amount": "30.00", "currency": "USD",
                                             "method": "card"}), 201)["payment_id"]
    paid = _ok(api.post(f"/v1/payments/{pay}/complete"))["position"]
    shipped = _ok(api.post(f"/v1/orders/{oid}/ship"))["position"]
    assert _stock(api, pid, shipped) == (7, 0, 7, True)  # the 3 left with their reservation
    delivered = _ok(api.post(f"/v1/orders/{oid}/deliver"))["position"]
    assert _stock(api, pid, delivered) == (7, 0, 7, True)

    # a full refund bringing all 3 back into stock
    refund = {"amount": "30.00", "lines": [{"product_id": pid, "quantity": 3}], "restock": True}
    returned = _ok(api.post(f"/v1/orders/{oid}/refund", json=refund))["position"]
    assert _stock(api, pid, returned) == (10, 0, 10, True)
    units = _metric(api, "units_returned", pid, returned, "1h")
    assert (units["value"], units["components"]["restocked"]) == (3, 3)
    rate = _metric(api, "return_rate", pid, returned, "1h")
    assert (rate["value"], rate["components"]) == (1.0, {"units_returned": 3, "units_shipped": 3})
    stock = _metric(api, "stock_on_hand", pid, returned, "now")
    assert (stock["value"], stock["components"]) == (10, {"on_hand": 10, "reserved": 0})

    # time travel: each stage as it stood
    assert _stock(api, pid, returned, as_of=recorded_instant(api, paid)) == (10, 3, 7, True)
    assert _stock(api, pid, returned, as_of=recorded_instant(api, delivered)) == (7, 0, 7, True)

    # adjustments: never below what open orders hold; reasons and deltas checked
    second = _ok(api.post("/v1/orders", json={"user_id": user, "currency": "USD",
                                             "lines": [{**line, "quantity": 4}]}), 201)
    assert _stock(api, pid, second["position"]) == (10, 4, 6, True)
    damaged = _ok(api.post(f"/v1/products/{pid}/adjust", json={"delta": -2, "reason": "damage"}))["position"]
    assert _stock(api, pid, damaged) == (8, 4, 4, True)
    _refused(api.post(f"/v1/products/{pid}/adjust", json={"delta": -5, "reason": "shrinkage"}), 409,
             "stock_below_reserved")
    _refused(api.post(f"/v1/products/{pid}/adjust", json={"delta": 2, "reason": "theft"}), 422,
             "validation_failed")
    _refused(api.post(f"/v1/products/{pid}/adjust", json={"delta": 0, "reason": "count"}), 422,
             "validation_failed")
    counted = _ok(api.post(f"/v1/products/{pid}/adjust", json={"delta": 1, "reason": "count"}))["position"]
    assert _stock(api, pid, counted) == (9, 4, 5, True)

    # nothing comes back from an order that has not shipped; never more than shipped
    oid2 = second["order_id"]
    _ok(api.post(f"/v1/orders/{oid2}/confirm"))
    pay2 = _ok(api.post("/v1/payments", json={"order_id": oid2, "amount": "40.00", "currency": "USD",
                                              "method": "card"}), 201)["payment_id"]
    _ok(api.post(f"/v1/payments/{pay2}/complete"))
    back = {"amount": "10.00", "lines": [{"product_id": pid, "quantity": 1}]}
    _refused(api.post(f"/v1/orders/{oid2}/refund", json=back), 409, "return_before_shipment")
    shipped2 = _ok(api.post(f"/v1/orders/{oid2}/ship"))["position"]
    assert _stock(api, pid, shipped2) == (5, 0, 5, True)
    too_many = {"amount": "10.00", "lines": [{"product_id": pid, "quantity": 5}]}
    _refused(api.post(f"/v1/orders/{oid2}/refund", json=too_many), 409, "return_exceeds_shipped")
    # a damaged return: refunded, counted as returned, not back in stock
    written_off = {"amount": "10.00", "lines": [{"product_id": pid, "quantity": 1}], "restock": False}
    last = _ok(api.post(f"/v1/payments/{pay2}/refund", json=written_off))["position"]
    assert _stock(api, pid, last) == (5, 0, 5, True)
    units = _metric(api, "units_returned", pid, last, "1h")
    assert units["value"] == 4 and units["components"]["not_restocked"] == 1
    rate = _metric(api, "return_rate", pid, last, "1h")
    assert rate["components"] == {"units_returned": 4, "units_shipped": 7}

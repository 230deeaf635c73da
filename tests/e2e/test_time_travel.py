"""Time travel through HTTP on the embedded deployment: metric and entity ``as_of`` answer what was
true at that instant (later cancellations and refunds do not rewrite the past), and the order
timeline lists every event of an order with its stage durations.

The instants between two commands are read from the server's record of the first (its events'
``recorded_at``), never made by sleeping. The metric test filters by a channel and a category of its
own, so other tests' orders in the tenant (and the 5-minute window sliding past them) move nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from agentflow_process import AgentFlowProcess

from e2e.conftest import KEY_A, KEY_B, recorded_instant

MAX_EVENTS = 60


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentFlowProcess]:
    """This module's own server, with a small time-travel bound to exercise its 422."""
    srv = AgentFlowProcess(
        tmp_path_factory.mktemp("agentflow-tt"),
        f"{KEY_A}:tenant-a,{KEY_B}:tenant-b",
        env={"AGENTFLOW_TIME_TRAVEL_MAX_EVENTS": str(MAX_EVENTS)},
    )
    srv.start()
    try:
        yield srv
    finally:
        if srv.proc is not None:
            print(srv.tail(2000))
        srv.stop()


def _ok(resp: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    return body


def _metric(api: httpx.Client, name: str, **params: Any) -> dict[str, Any]:
    return _ok(api.get(f"/v1/metrics/{name}", params=params))


def _shop(api: httpx.Client, category: str = "kitchen") -> tuple[str, str, int]:
    """A product with stock and a user; the position of the last write."""
    pid = _ok(
        api.post(
            "/v1/products", json={"name": "Kettle", "category": category, "price": "10", "currency": "USD"}
        ),
        201,
    )["product_id"]
    _ok(api.post(f"/v1/products/{pid}/restock", json={"quantity": 50}))
    created = _ok(api.post("/v1/users", json={}), 201)
    return pid, created["user_id"], int(created["position"])


def _order(
    api: httpx.Client, user: str, pid: str, qty: int, price: str, channel: str = "web"
) -> dict[str, Any]:
    body = {
        "user_id": user,
        "currency": "USD",
        "channel": channel,
        "lines": [{"product_id": pid, "quantity": qty, "unit_price": price}],
    }
    return _ok(api.post("/v1/orders", json=body), 201)


def _pay(api: httpx.Client, oid: str, amount: str) -> int:
    pay = _ok(
        api.post(
            "/v1/payments", json={"order_id": oid, "amount": amount, "currency": "USD", "method": "card"}
        ),
        201,
    )["payment_id"]
    return int(_ok(api.post(f"/v1/payments/{pay}/complete"))["position"])


def test_metric_as_of_is_the_value_before_a_later_cancellation_and_refund(api: httpx.Client) -> None:
    mark = uuid.uuid4().hex[:8]
    channel, category = f"tt-{mark}", f"tt-{mark}"  # this test's orders only
    pid, user, shop_pos = _shop(api, category)
    start = recorded_instant(api, shop_pos)
    a = _order(api, user, pid, 2, "10", channel)  # 20.00, cancelled later
    b = _order(api, user, pid, 1, "15", channel)  # 15.00, paid, refunded later
    _ok(api.post(f"/v1/orders/{b['order_id']}/confirm"))
    pos = _pay(api, b["order_id"], "15")
    filters: dict[str, dict[str, str]] = {
        "revenue": {"channel": channel},
        "net_revenue": {"channel": channel},
        "order_count": {"channel": channel},
        "units_sold": {"category": category},
        "refund_rate": {"channel": channel},
    }
    names = tuple(filters)
    before = {n: _metric(api, n, window="5m", min_position=pos, **filters[n])["value"] for n in names}
    assert before["revenue"] == pytest.approx(35.0) and before["order_count"] == 2
    assert before["units_sold"] == 3
    at = recorded_instant(api, pos)
    _ok(api.post(f"/v1/orders/{a['order_id']}/cancel"))
    pos = _ok(api.post(f"/v1/orders/{b['order_id']}/refund", json={"amount": "15"}))["position"]

    after = {n: _metric(api, n, window="5m", min_position=pos, **filters[n])["value"] for n in names}
    assert after["revenue"] == pytest.approx(before["revenue"] - 20)
    assert after["net_revenue"] == pytest.approx(before["net_revenue"] - 35)
    assert after["order_count"] == before["order_count"] - 1
    assert after["refund_rate"] > before["refund_rate"]

    for n in names:  # the past is not rewritten
        then = _metric(api, n, window="5m", as_of=at, **filters[n])
        assert then["value"] == pytest.approx(before[n]), n
        assert then["meta"]["is_historical"] is True and then["window"] == "5m"
        assert then["meta"]["as_of"].startswith(at[:19])
    # before the orders were placed they are not in the window ending then
    early = _metric(api, "order_count", window="5m", as_of=start, **filters["order_count"])["value"]
    assert early == before["order_count"] - 2 == 0
    # the series as it stood then: its buckets add up to the historical value, not today's
    series = _ok(
        api.get("/v1/metrics/order_count/series", params={"window": "15m", "grain": "1m", "as_of": at})
    )
    assert series["meta"]["is_historical"] is True
    assert (
        sum(p["value"] for p in series["points"])
        == _metric(api, "order_count", window="15m", as_of=at)["value"]
    )
    # as_of now: the live value
    now = datetime.now(UTC).isoformat()
    for n in names:
        assert _metric(api, n, window="5m", as_of=now, **filters[n])["value"] == pytest.approx(after[n]), n
    live = _metric(api, "revenue", window="5m")
    assert live["meta"]["is_historical"] is False
    # wire shape unchanged
    hist = _metric(api, "revenue", window="5m", as_of=at, currency="USD")
    assert set(hist) >= {"metric_name", "value", "unit", "window", "computed_at", "components", "meta"}
    assert hist["unit"] == "USD" and hist["components"]["currency"] == "USD"
    # errors
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert api.get("/v1/metrics/revenue", params={"as_of": future}).status_code == 422
    assert api.get("/v1/metrics/revenue", params={"as_of": "yesterday"}).status_code == 422
    bad_window = api.get("/v1/metrics/revenue", params={"as_of": at, "window": "3w"})
    assert bad_window.status_code == 422
    # another tenant sees none of it, then or now
    with httpx.Client(base_url=str(api.base_url), headers={"X-API-Key": KEY_B}) as other:
        assert _metric(other, "revenue", window="5m", as_of=at)["value"] == 0.0
        assert _metric(other, "revenue", window="5m", as_of=now, **filters["revenue"])["value"] == 0.0


def test_entity_as_of_folds_the_store_up_to_that_instant(api: httpx.Client) -> None:
    pid, user, _ = _shop(api)
    first = _order(api, user, pid, 1, "10")
    at = recorded_instant(api, first["position"])
    _order(api, user, pid, 3, "10")
    pos = _ok(api.post(f"/v1/orders/{first['order_id']}/cancel"))["position"]
    order_now = _ok(api.get(f"/v1/entity/order/{first['order_id']}", params={"min_position": pos}))
    assert order_now["data"]["status"] == "cancelled"
    order_then = _ok(api.get(f"/v1/entity/order/{first['order_id']}", params={"as_of": at}))
    assert order_then["data"]["status"] == "pending" and order_then["data"]["cancelled_at"] is None
    assert order_then["meta"]["is_historical"] is True
    user_then = _ok(api.get(f"/v1/entity/user/{user}", params={"as_of": at}))["data"]
    assert user_then["total_orders"] == 1 and user_then["total_spent"] == 10.0
    user_now = _ok(api.get(f"/v1/entity/user/{user}", params={"min_position": pos}))["data"]
    assert user_now["total_orders"] == 1 and user_now["total_spent"] == 30.0  # first cancelled, second live
    product_then = _ok(api.get(f"/v1/entity/product/{pid}", params={"as_of": at}))["data"]
    assert product_then["reserved"] == 1 and product_then["stock_quantity"] == 49


def test_order_timeline_lists_every_event_with_stage_durations(
    api: httpx.Client, api_b: httpx.Client
) -> None:
    pid, user, _ = _shop(api)
    oid = _order(api, user, pid, 1, "10")["order_id"]
    _ok(api.post(f"/v1/orders/{oid}/confirm"))
    paid = _pay(api, oid, "10")
    mid = recorded_instant(api, paid)
    _ok(api.post(f"/v1/orders/{oid}/ship"))
    last = _ok(api.post(f"/v1/orders/{oid}/deliver"))["position"]

    tl = _ok(api.get(f"/v1/entity/order/{oid}/timeline"))
    assert tl["entity_type"] == "order" and tl["entity_id"] == oid
    types = [e["event_type"] for e in tl["events"]]
    assert types == [
        "OrderPlaced",
        "OrderConfirmed",
        "OrderPaymentCaptured",
        "OrderShipped",
        "OrderDelivered",
    ]
    positions = [e["position"] for e in tl["events"]]
    assert positions == sorted(positions) and positions[-1] == last == tl["meta"]["as_of_position"]
    assert [e["stream_version"] for e in tl["events"]] == [1, 2, 3, 4, 5]
    assert [s["stage"] for s in tl["stages"]] == ["placed", "confirmed", "paid", "shipped", "delivered"]
    durations = tl["stage_durations"]
    assert [(d["from"], d["to"]) for d in durations] == [
        ("placed", "confirmed"),
        ("confirmed", "paid"),
        ("paid", "shipped"),
        ("shipped", "delivered"),
    ]
    # each command is its own transaction, started after the previous one committed: the stages'
    # times strictly increase, and each duration is the difference of the recorded times
    times = [datetime.fromisoformat(e["occurred_at"].replace("Z", "+00:00")) for e in tl["events"]]
    assert all(t0 < t1 for t0, t1 in zip(times, times[1:], strict=False)), times
    for d, (t0, t1) in zip(durations, zip(times, times[1:], strict=False), strict=True):
        assert d["seconds"] == pytest.approx((t1 - t0).total_seconds(), abs=1e-3)
        assert d["seconds"] >= 0
    assert tl["total_seconds"] == pytest.approx(sum(d["seconds"] for d in durations), abs=1e-3)
    assert tl["meta"]["is_historical"] is False and tl["current_stage"] == "delivered"

    then = _ok(api.get(f"/v1/entity/order/{oid}/timeline", params={"as_of": mid}))
    assert then["current_stage"] == "paid" and then["event_count"] == 3 and then["meta"]["is_historical"]
    # the entity route still serves the order itself
    assert _ok(api.get(f"/v1/entity/order/{oid}"))["data"]["order_id"] == oid
    assert api.get("/v1/entity/order/ORD-NOPE/timeline").status_code == 404
    assert api.get(f"/v1/entity/product/{pid}/timeline").json()["error"]["code"] == "no_timeline"
    assert api_b.get(f"/v1/entity/order/{oid}/timeline").status_code == 404
    assert httpx.get(f"{api.base_url}/v1/entity/order/{oid}/timeline").status_code == 401


def test_time_travel_beyond_its_bound_is_a_clear_422(api: httpx.Client) -> None:
    pid = _ok(
        api.post("/v1/products", json={"name": "Bolt", "category": "tools", "price": "1", "currency": "USD"}),
        201,
    )["product_id"]
    for _ in range(MAX_EVENTS):
        _ok(api.post(f"/v1/products/{pid}/restock", json={"quantity": 1}))
    resp = api.get(
        "/v1/metrics/stock_on_hand", params={"window": "now", "as_of": datetime.now(UTC).isoformat()}
    )
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert body["error"]["code"] == "time_travel_too_large" and body["detail"]
    assert body["error"]["details"]["max_events"] == MAX_EVENTS

"""GET /v1/entity/order/{id}/timeline in process: an order's events from the event store, its stages and
the durations between them, now or as of an instant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar.testing import TestClient

from .conftest import A, B
from .shop_commands import act, ok, order, pay, product, user


def test_timeline_lists_every_event_with_its_stages(client: TestClient[Any]) -> None:
    pid, _ = product(client, A, "Timed")
    uid, _ = user(client, A, "Tim Eline")
    oid, _ = order(client, A, uid, pid)
    act(client, A, f"/v1/orders/{oid}/confirm")
    _, paid = pay(client, A, oid)
    act(client, A, f"/v1/orders/{oid}/ship")
    last = act(client, A, f"/v1/orders/{oid}/deliver")
    tl = ok(client.get(f"/v1/entity/order/{oid}/timeline", headers=A))
    assert tl["entity_type"] == "order" and tl["entity_id"] == oid and tl["event_count"] == 5
    assert [e["event_type"] for e in tl["events"]] == [
        "OrderPlaced", "OrderConfirmed", "OrderPaymentCaptured", "OrderShipped", "OrderDelivered",
    ]  # fmt: skip
    assert [e["stream_version"] for e in tl["events"]] == [1, 2, 3, 4, 5]
    assert tl["last_position"] == last == tl["meta"]["as_of_position"]
    assert tl["first_position"] == tl["events"][0]["position"]
    assert tl["meta"]["source"] == "event_store" and tl["meta"]["is_historical"] is False
    assert all(e["projected"] and "invalid_reason" not in e for e in tl["events"])
    assert [s["stage"] for s in tl["stages"]] == ["placed", "confirmed", "paid", "shipped", "delivered"]
    assert [(d["from"], d["to"]) for d in tl["stage_durations"]] == [
        ("placed", "confirmed"), ("confirmed", "paid"), ("paid", "shipped"), ("shipped", "delivered"),
    ]  # fmt: skip
    assert tl["total_seconds"] == pytest.approx(sum(d["seconds"] for d in tl["stage_durations"]), abs=1e-3)
    assert tl["current_stage"] == "delivered" and tl["events"][0]["seconds_since_previous"] is None
    # as of the payment: the events recorded up to it
    paid_event = next(e for e in tl["events"] if e["position"] == paid)
    then = ok(
        client.get(f"/v1/entity/order/{oid}/timeline", params={"as_of": paid_event["recorded_at"]}, headers=A)
    )
    assert then["current_stage"] == "paid" and then["event_count"] == 3
    assert then["meta"]["is_historical"] is True and then["meta"]["as_of_position"] == paid


def test_timeline_errors(client: TestClient[Any]) -> None:
    pid, _ = product(client, A, "Untimed")
    uid, _ = user(client, A, "No Body")
    oid, _ = order(client, A, uid, pid)
    assert client.get(f"/v1/entity/order/{oid}/timeline", headers=B).status_code == 404
    missing = client.get("/v1/entity/order/ORD-NOPE/timeline", headers=A)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "entity_not_found"
    product_tl = client.get(f"/v1/entity/product/{pid}/timeline", headers=A)
    assert product_tl.status_code == 404 and product_tl.json()["error"]["code"] == "no_timeline"
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    r = client.get(f"/v1/entity/order/{oid}/timeline", params={"as_of": future}, headers=A)
    assert r.status_code == 422 and r.json()["error"]["code"] == "as_of_in_future"
    r = client.get(f"/v1/entity/order/{oid}/timeline", params={"as_of": "yesterday"}, headers=A)
    assert r.status_code == 422 and r.json()["detail"]
    long_ago = client.get(
        f"/v1/entity/order/{oid}/timeline", params={"as_of": "2000-01-01T00:00:00"}, headers=A
    )
    assert long_ago.status_code == 404  # nothing of it had happened yet
    assert client.get(f"/v1/entity/order/{oid}/timeline").status_code == 401

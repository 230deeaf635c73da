"""GET /v1/lineage/{type}/{id} in process: the real events, positions and layers that built a row."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

from commands.ports import StreamWrite
from domain.events import NewEvent
from services.bootstrap import Container

from .conftest import A, B
from .shop_commands import act, ok, order, pay, product, user


def test_order_lineage_lists_its_events_positions_and_layers(client: TestClient[Any]) -> None:
    pid, _ = product(client, A, "Traceable")
    uid, _ = user(client, A, "Lin Eage")
    oid, placed = order(client, A, uid, pid)
    confirmed = act(client, A, f"/v1/orders/{oid}/confirm")
    pay(client, A, oid)
    shipped = act(client, A, f"/v1/orders/{oid}/ship")
    body = ok(client.get(f"/v1/lineage/order/{oid}", params={"min_position": shipped}, headers=A))
    assert body["entity_type"] == "order" and body["entity_id"] == oid
    events = body["events"]
    assert [e["type"] for e in events] == [
        "OrderPlaced",
        "OrderConfirmed",
        "OrderPaymentCaptured",
        "OrderShipped",
    ]
    positions = [e["position"] for e in events]
    assert positions == sorted(positions) and positions[0] <= placed and confirmed in positions
    assert positions[-1] == shipped and [e["stream_version"] for e in events] == [1, 2, 3, 4]
    for e in events:
        assert e["status"] == "applied" and e["in_read_model_row"] is True and "dead_letter" not in e
        assert e["stream_type"] == "order" and e["stream_id"] == oid and e["event_id"]
        assert e["applied_at"] is not None and e["durations_ms"]["recorded_to_applied"] >= 0
        assert e["correlation_id"] and e["actor"] == "api-key:tenant-a"
    layers = {n["layer"]: n for n in body["lineage"]}
    assert list(layers) == ["source", "event_store", "validation", "serving", "api"]  # no lake here
    assert layers["source"]["events"] == 4 and layers["source"]["system"] == "api-key:tenant-a"
    assert layers["event_store"]["position"] == shipped and layers["event_store"]["duration_ms"]["count"] == 4
    assert layers["validation"]["quality_score"] == 1.0 and layers["validation"]["rejected"] == 0
    assert layers["validation"]["system"] == "embedded projector"
    serving = layers["serving"]
    assert serving["table_or_topic"] == "orders" and serving["position"] == shipped
    assert serving["quality_score"] == 1.0 and "orders" in serving["tables"]
    assert (
        layers["api"]["position"] >= shipped and layers["api"]["table_or_topic"] == f"/v1/entity/order/{oid}"
    )
    assert body["validated"] is True and body["enriched"] is True and body["freshness_seconds"] >= 0
    rm = body["read_model"]
    assert rm["table"] == "orders" and rm["present"] is True and rm["row_version"] == shipped
    assert rm["contract"]["name"] == "order" and rm["contract"]["version"]
    assert body["meta"]["as_of_position"] >= shipped and body["meta"]["deployment"] == "embedded"
    # asked again: the same events, the same times
    again = ok(client.get(f"/v1/lineage/order/{oid}", headers=A))["events"]
    keys = ("position", "event_id", "type", "applied_at", "recorded_at")
    assert [[e[k] for k in keys] for e in again] == [[e[k] for k in keys] for e in events]


def test_product_and_user_lineage_follow_their_feeding_streams(client: TestClient[Any]) -> None:
    pid, _ = product(client, A, "Fed")
    uid, _ = user(client, A, "Feeder")
    oid, placed = order(client, A, uid, pid)
    prod = ok(client.get(f"/v1/lineage/product/{pid}", params={"min_position": placed}, headers=A))
    assert [e["type"] for e in prod["events"]][:3] == ["ProductRegistered", "StockReceived", "StockReserved"]
    assert prod["read_model"]["table"] == "products"
    usr = ok(client.get(f"/v1/lineage/user/{uid}", headers=A))
    streams = {(e["stream_type"], e["stream_id"]) for e in usr["events"]}
    assert {("user", uid), ("order", oid)} <= streams
    # only the user's own events are in its row; the order's feed it from outside
    assert all("in_read_model_row" not in e for e in usr["events"] if e["stream_type"] != "user")


def test_lineage_is_404_for_unknown_types_ids_and_other_tenants(client: TestClient[Any]) -> None:
    pid, pos = product(client, A, "Private")
    assert ok(client.get(f"/v1/lineage/product/{pid}", params={"min_position": pos}, headers=A))["events"]
    other = client.get(f"/v1/lineage/product/{pid}", headers=B)
    assert other.status_code == 404 and other.json()["error"]["code"] == "entity_not_found"
    missing = client.get("/v1/lineage/order/ORD-20000101-9999", headers=A)
    assert missing.status_code == 404 and missing.json()["detail"]
    planet = client.get(f"/v1/lineage/planet/{pid}", headers=A)
    assert planet.status_code == 404 and planet.json()["error"]["code"] == "unknown_entity_type"
    assert planet.json()["error"]["details"]["available"] == ["order", "user", "product", "session"]
    assert client.get(f"/v1/lineage/product/{pid}").status_code == 401
    r = client.get(f"/v1/lineage/product/{pid}", params={"min_position": 10**12, "timeout_ms": 0}, headers=A)
    assert r.status_code == 503 and r.json()["error"]["code"] == "position_not_yet_applied"


def test_a_dead_lettered_event_shows_where_it_stopped(
    client: TestClient[Any], app_container: Container
) -> None:
    """An invalid event written straight into the store (commands never write one) is dead-lettered by
    the pipeline: lineage lists it with its reason, and no row was built from it."""
    oid = "ORD-20000101-0042"
    line = {"product_id": "PROD-001", "quantity": 2, "unit_price_minor": 500}
    placed = NewEvent("order", oid, "OrderPlaced", {
        "order_id": oid, "user_id": "USR-00001", "currency": "USD", "channel": "web", "lines": [line],
        "total_minor": 1,  # not the sum of its lines
    }, schema_version=2)  # fmt: skip
    appended = app_container.store.append(
        "tenant-a", [StreamWrite("order", oid, 0, [placed])], {"actor": "test"}
    )
    body = ok(
        client.get(f"/v1/lineage/order/{oid}", params={"min_position": appended.last_position}, headers=A)
    )
    [event] = body["events"]
    assert event["status"] == "dead_lettered" and event["position"] == appended.last_position
    assert event["dead_letter"]["pipeline"] == "embedded" and event["dead_letter"]["stage"] == "validate"
    assert "sum of lines" in event["dead_letter"]["reason"] and "in_read_model_row" not in event
    layers = {n["layer"]: n for n in body["lineage"]}
    assert layers["validation"] == {
        **layers["validation"],
        "table_or_topic": "dead_letters",
        "quality_score": 0.0,
        "rejected": 1,
    }
    assert layers["serving"]["quality_score"] == 0.0 and layers["serving"]["position"] is None
    assert body["validated"] is False and body["enriched"] is False
    assert body["read_model"]["present"] is False and body["read_model"]["row_version"] is None
    assert client.get(f"/v1/lineage/order/{oid}", headers=B).status_code == 404

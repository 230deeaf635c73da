"""The command endpoints over HTTP, in process: answers, status codes, error codes, headers, and that a
refused command appends nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from litestar.testing import TestClient

from services.bootstrap import Container

from .conftest import A, B
from .shop import ok, order, product, user


def _events(container: Container, tenant: str) -> int:
    with container.engine.connect() as conn:
        return int(
            conn.exec_driver_sql("SELECT count(*) FROM events WHERE tenant_id = %s", (tenant,)).scalar_one()
        )


def _rejections(container: Container, tenant: str) -> int:
    now = datetime.now(UTC)
    return container.store.count_rejections(tenant, now - timedelta(hours=1), now + timedelta(hours=1))


def test_creations_answer_201_and_transitions_200(client: TestClient[Any]) -> None:
    registered = client.post(
        "/v1/products",
        json={"name": "Lamp", "category": "home", "price": 12, "currency": "usd"},
        headers={**A, "X-Correlation-ID": "corr-1"},
    )
    body = ok(registered, 201)
    assert set(body) == {"product_id", "stream_version", "position"} and body["stream_version"] == 1
    assert isinstance(body["position"], int) and body["product_id"].startswith("PROD-")
    assert registered.headers["ETag"] == '"1"' and registered.headers["X-Correlation-ID"] == "corr-1"
    pid = body["product_id"]
    restocked = ok(client.post(f"/v1/products/{pid}/restock", json={"quantity": 5}, headers=A), 200)
    assert restocked == {"product_id": pid, "stream_version": 2, "position": restocked["position"]}
    assert restocked["position"] > body["position"]
    assert (
        ok(client.post(f"/v1/products/{pid}/price", json={"price": "13.5"}, headers=A), 200)["stream_version"]
        == 3
    )

    uid = ok(client.post("/v1/users", headers=A), 201)["user_id"]  # every field optional: no body at all
    placed = order(client, A, pid, uid, quantity=2, unit_price="13.50")
    oid = placed["order_id"]
    assert placed["stream_version"] == 1 and oid.startswith("ORD-")
    ok(client.post(f"/v1/orders/{oid}/confirm", headers=A), 200)
    pay = ok(
        client.post(
            "/v1/payments",
            json={"order_id": oid, "amount": 27, "currency": "USD", "method": "card"},
            headers=A,
        ),
        201,
    )
    assert set(pay) == {"payment_id", "stream_version", "position"}
    ok(client.post(f"/v1/payments/{pay['payment_id']}/complete", json={}, headers=A), 200)
    ok(client.post(f"/v1/orders/{oid}/ship", headers=A), 200)
    delivered = ok(client.post(f"/v1/orders/{oid}/deliver", headers=A), 200)
    refund = {"amount": "13.50", "lines": [{"product_id": pid, "quantity": 1}], "restock": True}
    refunded = ok(client.post(f"/v1/orders/{oid}/refund", json=refund, headers=A), 200)
    assert refunded["order_id"] == oid and refunded["stream_version"] > delivered["stream_version"]

    sid = f"SES-{uuid.uuid4().hex[:12]}"
    first = ok(
        client.post(f"/v1/sessions/{sid}/events", json={"type": "page_view", "page_url": "/"}, headers=A), 201
    )
    assert first == {"session_id": sid, "stream_version": 1, "position": first["position"]}
    ok(client.post(f"/v1/sessions/{sid}/events", json={"type": "click", "page_url": "/x"}, headers=A), 200)


def test_unknown_entities_are_404_and_business_rules_409(
    client: TestClient[Any], app_container: Container
) -> None:
    for path in ("/v1/orders/ORD-20000101-0001/confirm", "/v1/payments/PAY-20000101-0001/complete"):
        r = client.post(path, headers=A)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found" and r.json()["detail"]
    r = client.post("/v1/products/PROD-999999/restock", json={"quantity": 1}, headers=A)
    assert r.status_code == 404

    pid = product(client, A, stock=1)["product_id"]
    uid = user(client, A)
    before = (_events(app_container, "tenant-a"), _rejections(app_container, "tenant-a"))
    short = client.post(
        "/v1/orders",
        json={
            "user_id": uid,
            "currency": "USD",
            "lines": [{"product_id": pid, "quantity": 2, "unit_price": "1"}],
        },
        headers=A,
    )
    assert short.status_code == 409 and short.json()["error"]["code"] == "insufficient_stock", short.text
    assert _events(app_container, "tenant-a") == before[0]  # nothing appended
    assert _rejections(app_container, "tenant-a") == before[1] + 1  # counted for error_rate

    oid = order(client, A, pid, uid, quantity=1)["order_id"]
    ok(client.post(f"/v1/orders/{oid}/cancel", json={"reason": "changed mind"}, headers=A), 200)
    again = client.post(f"/v1/orders/{oid}/cancel", headers=A)
    assert again.status_code == 409 and again.json()["error"]["code"]


def test_malformed_commands_are_422_with_every_field_error(
    client: TestClient[Any], app_container: Container
) -> None:
    before = (_events(app_container, "tenant-a"), _rejections(app_container, "tenant-a"))
    bad = client.post("/v1/orders", json={"user_id": "", "currency": "XXX", "lines": []}, headers=A)
    assert bad.status_code == 422, bad.text
    error = bad.json()["error"]
    assert error["code"] == "validation_failed" and bad.json()["detail"] == "request is not valid"
    assert {e["field"] for e in error["details"]} == {"user_id", "currency", "lines"}
    # the command's own validation reads the body: a string is not an integer, nested fields are named
    line = {"product_id": "PROD-001", "quantity": "2", "unit_price": "x"}
    nested = client.post(
        "/v1/orders", json={"user_id": "USR-00001", "currency": "USD", "lines": [line]}, headers=A
    )
    fields = {e["field"]: e["message"] for e in nested.json()["error"]["details"]}
    assert fields["lines[0].quantity"] == "must be an integer" and "lines[0].unit_price" in fields
    missing = client.post("/v1/products", json={}, headers=A).json()["error"]["details"]
    assert {e["field"] for e in missing} == {"name", "category", "currency", "price"}
    assert {e["message"] for e in missing} == {"is required"}
    adjust = client.post("/v1/products/PROD-001/adjust", json={"delta": 2, "reason": "theft"}, headers=A)
    assert adjust.status_code == 422 and adjust.json()["error"]["details"][0]["field"] == "reason"
    assert _rejections(app_container, "tenant-a") == before[1] + 4  # each one counted

    not_object = client.post("/v1/users", content=b"[1]", headers={**A, "Content-Type": "application/json"})
    assert not_object.status_code == 422 and not_object.json()["error"]["code"] == "invalid_body"
    not_json = client.post("/v1/users", content=b"{nope", headers={**A, "Content-Type": "application/json"})
    assert not_json.status_code == 422 and not_json.json()["error"]["code"] == "invalid_json"
    assert _events(app_container, "tenant-a") == before[0]


def test_nul_in_a_body_path_or_query_is_422_and_appends_nothing(
    client: TestClient[Any], app_container: Container
) -> None:
    before = _events(app_container, "tenant-a")
    body = {"name": "Mug\u0000", "category": "home", "price": "1", "currency": "USD"}
    r = client.post("/v1/products", json=body, headers=A)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "validation_failed"
    assert r.json()["error"]["details"] == [
        {"field": "name", "message": "must not contain the NUL character (\\u0000)"}
    ]
    lines = [{"product_id": "PROD-\u00001", "quantity": 1, "unit_price": "1"}]
    nested = client.post("/v1/orders", json={"user_id": "U", "currency": "USD", "lines": lines}, headers=A)
    assert (
        nested.status_code == 422 and nested.json()["error"]["details"][0]["field"] == "lines[0].product_id"
    )
    key = client.post("/v1/users", json={"na\u0000me": "x"}, headers=A)
    assert key.status_code == 422
    sid = client.post("/v1/sessions/SES-%00/events", json={"type": "page_view", "page_url": "/"}, headers=A)
    assert sid.status_code == 422 and sid.json()["error"]["details"][0]["field"] == "path"
    path = client.post("/v1/orders/ORD-%001/cancel", headers=A)
    assert path.status_code == 422
    query = client.get("/v1/metrics/revenue", params={"channel": "web\u0000"}, headers=A)
    assert query.status_code == 422 and query.json()["error"]["details"][0]["field"] == "channel"
    entity = client.get("/v1/entity/order/ORD-%00", headers=A)
    assert entity.status_code == 422
    assert _events(app_container, "tenant-a") == before
    # an escaped backslash is text, not NUL: stored as written
    literal = ok(client.post("/v1/users", json={"name": "a\\u0000b"}, headers=A), 201)
    (registered,) = app_container.store.load_stream("tenant-a", "user", literal["user_id"])
    assert registered.data["name"] == "a\\u0000b"


def test_if_match(client: TestClient[Any], app_container: Container) -> None:
    pid = product(client, A)["product_id"]  # registered + restocked: version 2
    conflict = client.post(
        f"/v1/products/{pid}/restock", json={"quantity": 1}, headers={**A, "If-Match": "7"}
    )
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "version_conflict"
    assert conflict.json()["error"]["details"] == {"current_version": 2, "expected_version": 7}
    assert conflict.headers["ETag"] == '"2"'
    done = ok(
        client.post(f"/v1/products/{pid}/restock", json={"quantity": 1}, headers={**A, "If-Match": '"2"'}),
        200,
    )
    assert done["stream_version"] == 3
    ok(
        client.post(f"/v1/products/{pid}/restock", json={"quantity": 1}, headers={**A, "If-Match": 'W/"3"'}),
        200,
    )
    ok(client.post(f"/v1/products/{pid}/restock", json={"quantity": 1}, headers={**A, "If-Match": "*"}), 200)
    for bad in ("abc", "-1"):
        r = client.post(f"/v1/products/{pid}/restock", json={"quantity": 1}, headers={**A, "If-Match": bad})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_if_match"


def test_idempotency_key(client: TestClient[Any], app_container: Container) -> None:
    key = str(uuid.uuid4())
    body = {"name": "Kettle", "category": "home", "price": "7.5", "currency": "GBP"}
    first = client.post("/v1/products", json=body, headers={**A, "Idempotency-Key": key})
    assert ok(first, 201) and "Idempotent-Replayed" not in first.headers
    events = _events(app_container, "tenant-a")
    again = client.post(
        "/v1/products", json=dict(reversed(body.items())), headers={**A, "Idempotency-Key": key}
    )
    assert ok(again, 201) == first.json() and again.headers["Idempotent-Replayed"] == "true"
    assert _events(app_container, "tenant-a") == events  # no new events
    other = client.post("/v1/products", json={**body, "price": "8"}, headers={**A, "Idempotency-Key": key})
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
    # the key is the tenant's own: another tenant's same key is a new command
    theirs = client.post("/v1/products", json=body, headers={**B, "Idempotency-Key": key})
    assert (
        ok(theirs, 201)["position"] > first.json()["position"] and "Idempotent-Replayed" not in theirs.headers
    )
    long = client.post("/v1/products", json=body, headers={**A, "Idempotency-Key": "k" * 256})
    assert long.status_code == 422 and long.json()["error"]["code"] == "invalid_idempotency_key"


def test_tenants_and_keys(client: TestClient[Any]) -> None:
    pid = product(client, A)["product_id"]
    other = client.post(f"/v1/products/{pid}/restock", json={"quantity": 1}, headers=B)
    assert other.status_code == 404  # tenant B has no such product
    assert client.post("/v1/users", json={}).status_code == 401
    assert client.post("/v1/users", json={}, headers={"X-API-Key": "wrong"}).status_code == 401

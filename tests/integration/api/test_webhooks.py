"""The webhook endpoints over HTTP, in process: shapes, status and error codes, paging, replay, and
tenant isolation (tenant B gets 404 for tenant A's endpoint, which stays as it was). No worker fleet
runs here: deliveries stay queued (delivery itself is tests/integration/test_webhooks.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from webhook_helpers import append_order

from services.bootstrap import Container, build
from services.config import WebhookSettings

from .conftest import KEYS, A, B, in_process_settings

ENDPOINT_FIELDS = {
    "id", "url", "description", "event_types", "entity_ids", "filters", "status", "disabled_reason",
    "start_position", "created_at", "updated_at",
}  # fmt: skip
DELIVERY_FIELDS = {
    "id", "webhook_id", "endpoint_id", "kind", "event_id", "position", "event_type", "status", "attempts",
    "next_attempt_at", "last_status", "last_error", "created_at", "finished_at", "attempt_log",
}  # fmt: skip
URL = "http://127.0.0.1:9/hook"  # never called: no fleet runs in this process


@pytest.fixture(scope="module")
def app_container(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    """Loopback destinations allowed (the operator's switch), so endpoints can be made without DNS."""
    settings = in_process_settings(
        Path(tmp_path_factory.mktemp("api-webhooks")), webhooks=WebhookSettings(allow_private=True)
    )
    container = build(settings, database, KEYS)
    container.clickhouse.drop_all()
    container.clickhouse.ensure_schema()
    try:
        yield container
    finally:
        container.close()


def _create(client: TestClient[Any], **body: Any) -> dict[str, Any]:
    r = client.post("/v1/webhooks", json={"url": URL, **body}, headers=A)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_create_read_list_update_delete(client: TestClient[Any]) -> None:
    made = _create(
        client, description="orders", event_types=["OrderPlaced"], entity_ids=["ORD-1"],
        filters=[{"field": "total_minor", "op": ">=", "value": 100}],
    )  # fmt: skip
    assert set(made) == ENDPOINT_FIELDS | {"secret"} and made["secret"].startswith("whsec_")
    assert made["status"] == "active" and made["disabled_reason"] is None
    assert made["filters"] == [{"field": "total_minor", "op": "gte", "value": 100}]  # normalised
    ep_id = made["id"]
    got = client.get(f"/v1/webhooks/{ep_id}", headers=A)
    assert got.status_code == 200 and set(got.json()) == ENDPOINT_FIELDS  # the secret is shown once
    assert got.json() == {k: v for k, v in made.items() if k != "secret"}
    listing = client.get("/v1/webhooks", headers=A).json()
    assert ep_id in [e["id"] for e in listing["data"]] and listing["count"] == len(listing["data"])

    off = client.patch(f"/v1/webhooks/{ep_id}", json={"enabled": False}, headers=A)
    assert off.status_code == 200 and off.json()["status"] == "disabled"
    assert off.json()["disabled_reason"] == "disabled by the API"
    on = client.patch(f"/v1/webhooks/{ep_id}", json={"enabled": True}, headers=A)
    assert on.json()["status"] == "active" and on.json()["disabled_reason"] is None
    r = client.patch(f"/v1/webhooks/{ep_id}", json={}, headers=A)
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_failed"

    rotated = client.post(f"/v1/webhooks/{ep_id}/rotate-secret", headers=A)
    assert rotated.status_code == 200
    body = rotated.json()
    assert set(body) == ENDPOINT_FIELDS | {"secret", "previous_secrets_valid_for_seconds"}
    assert body["secret"].startswith("whsec_") and body["secret"] != made["secret"]
    assert body["previous_secrets_valid_for_seconds"] == 24 * 3600.0

    assert client.delete(f"/v1/webhooks/{ep_id}", headers=A).status_code == 204
    gone = client.get(f"/v1/webhooks/{ep_id}", headers=A), client.delete(f"/v1/webhooks/{ep_id}", headers=A)
    for r in gone:
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found" and r.json()["detail"]


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({}, "validation_failed", "url"),
        ({"url": "  "}, "validation_failed", "url"),
        ({"url": "ftp://example.com/x"}, "invalid_destination", "url"),
        ({"url": "http://169.254.169.254/latest/meta-data"}, "invalid_destination", "url"),  # link-local
        ({"url": "http://user:pw@127.0.0.1/"}, "invalid_destination", "url"),
        ({"url": URL, "filters": [{"field": "x", "op": "~", "value": 1}]}, "validation_failed", "filters"),
        ({"url": URL, "filters": [{"field": "x", "op": "in", "value": 1}]}, "validation_failed", "filters"),
        ({"url": URL, "event_types": [""]}, "validation_failed", "event_types"),
        ({"url": URL, "entity_ids": "ORD-1"}, "validation_failed", "entity_ids"),
        ({"url": URL, "description": 5}, "validation_failed", "description"),
    ],
)
def test_invalid_subscriptions_are_refused(
    client: TestClient[Any], body: dict[str, Any], code: str, field: str
) -> None:
    r = client.post("/v1/webhooks", json=body, headers=A)
    assert r.status_code == 422, r.text
    err = r.json()
    assert err["error"]["code"] == code and err["detail"] and err["correlation_id"] is not None
    assert field in [d["field"] for d in err["error"]["details"]]


def test_test_delivery_and_the_delivery_log(client: TestClient[Any]) -> None:
    ep = _create(client)
    queued = client.post(f"/v1/webhooks/{ep['id']}/test", headers=A)
    assert queued.status_code == 202, queued.text
    d, payload = queued.json()["delivery"], queued.json()["payload"]
    assert set(d) == DELIVERY_FIELDS
    assert d["kind"] == "test" and d["event_type"] == "webhook.test" and d["status"] == "pending"
    assert d["webhook_id"].startswith("msg_") and d["attempts"] == 0 and d["attempt_log"] == []
    assert payload["type"] == "webhook.test" and payload["tenant_id"] == "tenant-a"
    assert payload["endpoint_id"] == ep["id"]
    second = client.post(f"/v1/webhooks/{ep['id']}/test", headers=A).json()["delivery"]

    log = client.get(f"/v1/webhooks/{ep['id']}/deliveries", headers=A).json()
    assert [x["id"] for x in log["data"]] == [second["id"], d["id"]]  # newest first
    assert log["count"] == 2 and log["next_before"] is None
    page = client.get(f"/v1/webhooks/{ep['id']}/deliveries", params={"limit": 1}, headers=A).json()
    assert [x["id"] for x in page["data"]] == [second["id"]] and page["next_before"] == second["id"]
    rest = client.get(
        f"/v1/webhooks/{ep['id']}/deliveries", params={"limit": 1, "before": page["next_before"]}, headers=A
    ).json()
    assert [x["id"] for x in rest["data"]] == [d["id"]]
    pending = client.get(f"/v1/webhooks/{ep['id']}/deliveries", params={"status": "pending"}, headers=A)
    assert pending.json()["count"] == 2
    done = client.get(f"/v1/webhooks/{ep['id']}/deliveries", params={"status": "succeeded"}, headers=A)
    assert done.json()["data"] == []
    for params in ({"status": "bogus"}, {"limit": "many"}, {"before": "x"}):
        r = client.get(f"/v1/webhooks/{ep['id']}/deliveries", params=params, headers=A)
        assert r.status_code == 422 and r.json()["error"]["code"] == "validation_failed", params
    assert client.get("/v1/webhooks/ep_missing/deliveries", headers=A).status_code == 404


def test_range_replay(client: TestClient[Any], app_container: Container) -> None:
    ep = _create(client, event_types=["OrderPlaced"])
    positions = [append_order(app_container.store, "tenant-a") for _ in range(3)]
    append_order(app_container.store, "tenant-b")  # another tenant's event is never replayed to A
    body = {"from_position": positions[0], "to_position": positions[-1] + 1, "replay_id": "r-1"}
    done = client.post(f"/v1/webhooks/{ep['id']}/replay", json=body, headers=A)
    assert done.status_code == 202, done.text
    assert done.json() == {
        "replay_id": "r-1", "endpoint_id": ep["id"], "from_position": positions[0],
        "to_position": positions[-1] + 1, "events_scanned": 3, "events_matched": 3, "deliveries_created": 3,
    }  # fmt: skip
    again = client.post(f"/v1/webhooks/{ep['id']}/replay", json=body, headers=A).json()
    assert again["deliveries_created"] == 0 and again["events_matched"] == 3  # same replay id: nothing twice
    log = client.get(f"/v1/webhooks/{ep['id']}/deliveries", params={"limit": 10}, headers=A).json()["data"]
    assert sorted(x["position"] for x in log) == positions and {x["kind"] for x in log} == {"replay"}
    for bad in (
        {},
        {"from_position": 5, "to_position": 4},
        {"from_position": 0, "to_position": 4},
        {"from_position": 1, "to_position": 2, "replay_id": ""},
        {"from_position": 1, "to_position": 2, "replay_id": "x" * 101},
        {"from_position": True, "to_position": 2},
    ):
        r = client.post(f"/v1/webhooks/{ep['id']}/replay", json=bad, headers=A)
        assert r.status_code == 422 and r.json()["error"]["code"] == "validation_failed", (bad, r.text)


def test_tenant_b_cannot_see_or_touch_tenant_a_endpoints(client: TestClient[Any]) -> None:
    ep = _create(client, description="a's")
    before = client.get(f"/v1/webhooks/{ep['id']}", headers=A).json()
    path = f"/v1/webhooks/{ep['id']}"
    attempts = [
        client.get(path, headers=B),
        client.patch(path, json={"enabled": False}, headers=B),
        client.delete(path, headers=B),
        client.post(f"{path}/rotate-secret", headers=B),
        client.post(f"{path}/test", headers=B),
        client.get(f"{path}/deliveries", headers=B),
        client.post(f"{path}/replay", json={"from_position": 1, "to_position": 10}, headers=B),
    ]
    for r in attempts:
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", (r.request.url, r.text)
    assert ep["id"] not in [e["id"] for e in client.get("/v1/webhooks", headers=B).json()["data"]]
    assert client.get(path, headers=A).json() == before  # unchanged: same secret rotation time, status
    assert client.get(f"{path}/deliveries", headers=A).json()["data"] == []  # B queued nothing


def test_a_key_is_needed(client: TestClient[Any]) -> None:
    for r in (
        client.get("/v1/webhooks"),
        client.post("/v1/webhooks", json={"url": URL}),
        client.get("/v1/webhooks/ep_x", headers={"X-API-Key": "wrong"}),
    ):
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"

"""The dead-letter endpoints over HTTP, in process: list (filters, paging), stats, get, replay (422 still
invalid, 200 appended once, 409 other data or dismissed), dismiss, and tenant isolation (tenant B gets
404 for tenant A's letter, which stays as it was)."""

from __future__ import annotations

import uuid
from typing import Any

from litestar.testing import TestClient
from webhook_helpers import append_order

from connectors.dead_letters import DeadLetter
from services.bootstrap import Container

from .conftest import A, B

LETTER_FIELDS = {
    "id", "tenant_id", "pipeline", "stage", "reason", "reason_class", "event_id", "position", "event_type",
    "record", "status", "status_note", "created_at", "updated_at", "replayed_at", "dismissed_at",
    "replay_position", "replay_event_id", "corrected_data",
}  # fmt: skip


def _letter(container: Container, tenant: str, stage: str = "validate", reason: str = "sum of lines") -> int:
    """A dead letter for a stored (valid) OrderPlaced of ``tenant``: what the validate stage files."""
    position = append_order(container.store, tenant, 1500, order_id=f"ORD-{uuid.uuid4().hex[:8]}")
    [event] = container.store.read_all(position - 1, limit=1)
    record = {"event_id": str(event.event_id), "data": event.data}
    letter = DeadLetter(
        "embedded", stage, f"{reason} != total_minor", event_id=str(event.event_id), position=position,
        tenant_id=tenant, event_type="OrderPlaced", record=record,
    )  # fmt: skip
    assert container.dead_letters.add([letter]) == 1
    [stored] = [d for d in container.dead_letters.list(tenant, 500) if d.position == position]
    assert stored.id is not None
    return stored.id


def test_list_get_and_stats(client: TestClient[Any], app_container: Container) -> None:
    ids = [_letter(app_container, "tenant-a") for _ in range(3)]
    parse = _letter(app_container, "tenant-a", stage="parse", reason="not json")
    got = client.get(f"/v1/deadletter/{ids[0]}", headers=A)
    assert got.status_code == 200 and set(got.json()) == LETTER_FIELDS
    letter = got.json()
    assert letter["status"] == "failed" and letter["reason_class"] == "total_mismatch"
    assert letter["pipeline"] == "embedded" and letter["record"]["data"]["total_minor"] == 1500

    page = client.get("/v1/deadletter", params={"limit": 2}, headers=A).json()
    assert [d["id"] for d in page["data"]] == [parse, ids[2]] and page["next_cursor"] == str(ids[2])
    rest = client.get("/v1/deadletter", params={"limit": 2, "cursor": page["next_cursor"]}, headers=A).json()
    assert [d["id"] for d in rest["data"]][:2] == [ids[1], ids[0]]
    parsed = client.get("/v1/deadletter", params={"stage": "parse"}, headers=A).json()
    assert (
        [d["id"] for d in parsed["data"]] == [parse]
        and parsed["count"] == 1
        and parsed["next_cursor"] is None
    )
    since = client.get(
        "/v1/deadletter", params={"since": "2000-01-01T00:00:00Z", "pipeline": "embedded"}, headers=A
    )
    assert since.status_code == 200 and since.json()["count"] >= 4
    assert (
        client.get("/v1/deadletter", params={"since": "2999-01-01T00:00:00"}, headers=A).json()["data"] == []
    )

    stats = client.get("/v1/deadletter/stats", headers=A).json()
    assert set(stats) == {"total", "by_status", "by_stage", "by_pipeline", "by_reason_class", "by_event_type"}
    assert set(stats["by_status"]) == {"failed", "replay_pending", "replayed", "dismissed"}
    assert stats["by_reason_class"]["parse"] >= 1 and stats["by_event_type"]["OrderPlaced"] >= 4
    assert client.get("/v1/deadletter/stats", params={"stage": "parse"}, headers=A).json()["total"] >= 1

    for params in ({"status": "lost"}, {"pipeline": "nowhere"}, {"since": "yesterday"}, {"limit": "x"}):
        for path in ("/v1/deadletter", "/v1/deadletter/stats"):
            if path.endswith("stats") and "limit" in params:
                continue
            r = client.get(path, params=params, headers=A)
            assert r.status_code == 422 and r.json()["error"]["code"] == "validation_failed", (path, params)
    for missing in ("abc", "0", "-3", "999999"):
        r = client.get(f"/v1/deadletter/{missing}", headers=A)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", missing


def test_replay_once_then_conflicts(client: TestClient[Any], app_container: Container) -> None:
    lid = _letter(app_container, "tenant-a")
    original = client.get(f"/v1/deadletter/{lid}", headers=A).json()
    data = original["record"]["data"]

    still = client.post(f"/v1/deadletter/{lid}/replay", json={"data": {**data, "total_minor": 1}}, headers=A)
    assert still.status_code == 422 and still.json()["error"]["code"] == "replay_invalid"
    assert {d["field"] for d in still.json()["error"]["details"]} == {"data"}
    assert client.get(f"/v1/deadletter/{lid}", headers=A).json()["status"] == "failed"
    r = client.post(f"/v1/deadletter/{lid}/replay", json={"data": [1]}, headers=A)
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_failed"

    done = client.post(f"/v1/deadletter/{lid}/replay", json={"data": data}, headers={**A, "X-Actor": "ops"})
    assert done.status_code == 200, done.text
    body = done.json()
    assert set(body) == LETTER_FIELDS | {"appended"}
    assert body["status"] == "replayed" and body["appended"] is True
    assert body["position"] > original["position"] and body["replay_position"] == body["position"]
    [event] = app_container.store.read_all(body["position"] - 1, limit=1)
    assert str(event.event_id) == body["replay_event_id"] and event.metadata["actor"] == "ops"
    assert event.metadata["replay_of"]["dead_letter_id"] == str(lid)

    again = client.post(f"/v1/deadletter/{lid}/replay", json={"data": data}, headers=A)
    assert again.status_code == 200 and again.json()["appended"] is False
    assert again.json()["position"] == body["position"]
    other = client.post(f"/v1/deadletter/{lid}/replay", json={"data": {**data, "channel": "app"}}, headers=A)
    assert other.status_code == 409 and other.json()["error"]["code"] == "invalid_status"
    assert other.json()["error"]["details"] == {"status": "replayed"}
    r = client.post(f"/v1/deadletter/{lid}/dismiss", headers=A)
    assert r.status_code == 409 and r.json()["error"]["code"] == "invalid_status"


def test_dismiss(client: TestClient[Any], app_container: Container) -> None:
    lid = _letter(app_container, "tenant-a")
    r = client.post(f"/v1/deadletter/{lid}/dismiss", json={"note": "test data"}, headers=A)
    assert r.status_code == 200 and set(r.json()) == LETTER_FIELDS
    assert r.json()["status"] == "dismissed" and r.json()["status_note"] == "test data"
    assert (
        client.post(f"/v1/deadletter/{lid}/dismiss", headers=A).json()["status"] == "dismissed"
    )  # repeatable
    replay = client.post(f"/v1/deadletter/{lid}/replay", json={}, headers=A)
    assert replay.status_code == 409 and replay.json()["error"]["details"] == {"status": "dismissed"}
    listed = client.get("/v1/deadletter", params={"status": "dismissed"}, headers=A).json()["data"]
    assert lid in [d["id"] for d in listed]
    assert client.post(f"/v1/deadletter/{lid}/dismiss", json={"note": 5}, headers=A).status_code == 422
    assert client.post("/v1/deadletter/999999/dismiss", headers=A).status_code == 404


def test_tenant_b_cannot_see_or_touch_tenant_a_letters(
    client: TestClient[Any], app_container: Container
) -> None:
    lid = _letter(app_container, "tenant-a")
    before = client.get(f"/v1/deadletter/{lid}", headers=A).json()
    for r in (
        client.get(f"/v1/deadletter/{lid}", headers=B),
        client.post(f"/v1/deadletter/{lid}/replay", json={}, headers=B),
        client.post(f"/v1/deadletter/{lid}/dismiss", json={"note": "b"}, headers=B),
    ):
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", (r.request.url, r.text)
    assert lid not in [
        d["id"] for d in client.get("/v1/deadletter", params={"limit": 500}, headers=B).json()["data"]
    ]
    assert client.get(f"/v1/deadletter/{lid}", headers=A).json() == before
    for r in (
        client.get("/v1/deadletter"),
        client.get("/v1/deadletter/stats"),
        client.get(f"/v1/deadletter/{lid}"),
    ):
        assert r.status_code == 401

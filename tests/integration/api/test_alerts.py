"""The alert endpoints over HTTP, in process: shapes, status and error codes, the test notification,
history, and tenant isolation (tenant B gets 404 for tenant A's rule, which stays as it was). No
evaluator runs here (evaluation is tests/integration/test_alerts.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from services.bootstrap import Container, build
from services.config import WebhookSettings

from .conftest import KEYS, A, B, in_process_settings

RULE_FIELDS = {
    "id", "name", "description", "metric", "window", "currency", "filters", "condition", "threshold",
    "direction", "compare_to", "for_s", "keep_firing_for_s", "cooldown_s", "notify_resolved", "endpoint_id",
    "enabled", "state", "state_since", "pending_since", "firing_since", "last_fired_at", "last_value",
    "last_evaluated_at", "last_error", "transitions", "next_check_at", "created_at", "updated_at",
}  # fmt: skip


@pytest.fixture(scope="module")
def app_container(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    settings = in_process_settings(
        Path(tmp_path_factory.mktemp("api-alerts")), webhooks=WebhookSettings(allow_private=True)
    )
    container = build(settings, database, KEYS)
    container.clickhouse.drop_all()
    container.clickhouse.ensure_schema()
    try:
        yield container
    finally:
        container.close()


@pytest.fixture(scope="module")
def endpoint_a(client: TestClient[Any]) -> str:
    r = client.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/alerts"}, headers=A)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def base(endpoint_id: str | None = None, **over: Any) -> dict[str, Any]:
    doc = {"name": "orders spike", "metric": "order_count", "window": "5m", "condition": "above",
           "threshold": 1, "for": "2s", "endpoint_id": endpoint_id}  # fmt: skip
    return {**doc, **over}


def test_create_read_update_delete(client: TestClient[Any], endpoint_a: str) -> None:
    r = client.post("/v1/alerts", json=base(endpoint_a, filters={"channel": "web"}), headers=A)
    assert r.status_code == 201, r.text
    rule = r.json()
    assert set(rule) == RULE_FIELDS and r.headers["location"] == f"/v1/alerts/{rule['id']}"
    assert rule["for_s"] == 2 and rule["state"] == "inactive" and rule["transitions"] == 0
    assert (
        rule["filters"] == {"channel": "web"} and rule["threshold"] == 1 and rule["endpoint_id"] == endpoint_a
    )
    assert rule["direction"] == "either" and rule["compare_to"] == "previous_evaluation"
    aid = rule["id"]
    assert client.get(f"/v1/alerts/{aid}", headers=A).json() == rule
    listing = client.get("/v1/alerts", headers=A).json()
    assert aid in [a["id"] for a in listing["data"]] and listing["count"] == len(listing["data"])
    assert client.get("/v1/alerts", params={"state": "firing"}, headers=A).json() == {"data": [], "count": 0}

    p = client.patch(f"/v1/alerts/{aid}", json={"threshold": 5, "cooldown": "1m"}, headers=A)
    assert p.status_code == 200 and p.json()["threshold"] == 5 and p.json()["cooldown_s"] == 60
    assert p.json()["for_s"] == 2  # kept
    assert (
        client.patch(f"/v1/alerts/{aid}", headers=A).json()["threshold"] == 5
    )  # an empty patch changes nothing
    replacement = {"name": "low", "metric": "revenue", "window": "1h", "condition": "below", "threshold": 100,
                   "currency": "usd"}  # fmt: skip
    put = client.put(f"/v1/alerts/{aid}", json=replacement, headers=A)
    assert put.status_code == 200, put.text
    assert put.json()["currency"] == "USD" and put.json()["for_s"] == 0 and put.json()["endpoint_id"] is None
    for bad in ({"window": "nope"}, {"threshold": "high"}, {"bogus": 1}):
        assert client.patch(f"/v1/alerts/{aid}", json=bad, headers=A).status_code == 422, bad
    assert client.delete(f"/v1/alerts/{aid}", headers=A).status_code == 204
    for r in (client.get(f"/v1/alerts/{aid}", headers=A), client.delete(f"/v1/alerts/{aid}", headers=A)):
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("over", "code"),
    [
        ({"metric": "nope"}, "unknown_metric"),
        ({"window": "2m"}, "invalid_window"),
        ({"condition": "sideways"}, "validation_failed"),
        ({"for": "soon"}, "validation_failed"),
        ({"endpoint_id": "ep_missing"}, "validation_failed"),
        ({"filters": {"category": "x"}}, "invalid_dimension"),
        ({"bogus": 1}, "validation_failed"),
        ({"name": ""}, "validation_failed"),
        ({"threshold": None}, "validation_failed"),
        ({"currency": "dollars"}, "validation_failed"),
        ({"compare_to": "yesterday"}, "validation_failed"),
        ({"enabled": "yes"}, "validation_failed"),
    ],
)
def test_invalid_rules_are_refused(
    client: TestClient[Any], endpoint_a: str, over: dict[str, Any], code: str
) -> None:
    r = client.post("/v1/alerts", json={**base(endpoint_a), **over}, headers=A)
    assert r.status_code == 422 and r.json()["error"]["code"] == code, (over, r.text)
    assert r.json()["detail"]


def test_unknown_details_name_what_is_offered(client: TestClient[Any]) -> None:
    r = client.post("/v1/alerts", json=base(metric="nope"), headers=A).json()
    assert "revenue" in r["error"]["details"]["available"]
    r = client.post("/v1/alerts", json=base(window="2m"), headers=A).json()
    assert "5m" in r["error"]["details"]["available_windows"]
    r = client.post("/v1/alerts", json=base(condition="sideways"), headers=A).json()
    assert r["error"]["details"] == [
        {"field": "condition", "message": "must be one of above, below, change_pct"}
    ]


def test_test_notification_and_history(client: TestClient[Any], endpoint_a: str) -> None:
    aid = client.post("/v1/alerts", json=base(endpoint_a), headers=A).json()["id"]
    t = client.post(f"/v1/alerts/{aid}/test", headers=A)
    assert t.status_code == 202, t.text
    out = t.json()
    assert set(out) == {"deliveries", "payload", "evaluation"}
    [d] = out["deliveries"]
    assert d["endpoint_id"] == endpoint_a and d["kind"] == "alert" and d["event_type"] == "alert.test"
    assert out["payload"]["type"] == "alert.test" and out["payload"]["data"]["alert_id"] == aid
    assert out["evaluation"] == {"value": 0.0, "holds": False, "error": None, "baseline": None}
    log = client.get(f"/v1/webhooks/{endpoint_a}/deliveries", headers=A).json()["data"]
    assert d["id"] in [x["id"] for x in log]
    # the test changes neither state nor history
    rule = client.get(f"/v1/alerts/{aid}", headers=A).json()
    assert rule["state"] == "inactive" and rule["transitions"] == 0
    history = client.get(f"/v1/alerts/{aid}/history", headers=A)
    assert history.status_code == 200
    assert history.json() == {
        "alert_id": aid,
        "state": "inactive",
        "data": [],
        "count": 0,
        "next_before": None,
    }
    assert client.get(f"/v1/alerts/{aid}/history", params={"limit": "x"}, headers=A).status_code == 422

    # without an endpoint_id nobody is subscribed to alert.* here: 422, nothing queued
    lonely = client.post("/v1/alerts", json=base(None), headers=A).json()["id"]
    r = client.post(f"/v1/alerts/{lonely}/test", headers=A)
    assert r.status_code == 422 and r.json()["error"]["code"] == "no_endpoint"


def test_tenant_b_cannot_see_or_touch_tenant_a_rules(client: TestClient[Any], endpoint_a: str) -> None:
    aid = client.post("/v1/alerts", json=base(endpoint_a, name="a's rule"), headers=A).json()["id"]
    before = client.get(f"/v1/alerts/{aid}", headers=A).json()
    path = f"/v1/alerts/{aid}"
    for r in (
        client.get(path, headers=B),
        client.patch(path, json={"threshold": 99}, headers=B),
        client.put(path, json=base(None, name="b's"), headers=B),
        client.delete(path, headers=B),
        client.post(f"{path}/test", headers=B),
        client.get(f"{path}/history", headers=B),
    ):
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", (r.request.url, r.text)
    assert aid not in [a["id"] for a in client.get("/v1/alerts", headers=B).json()["data"]]
    # B cannot target A's endpoint either
    r = client.post("/v1/alerts", json=base(endpoint_a), headers=B)
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "endpoint_id"
    assert client.get(path, headers=A).json() == before


def test_a_key_is_needed(client: TestClient[Any]) -> None:
    for r in (
        client.get("/v1/alerts"),
        client.post("/v1/alerts", json=base()),
        client.get("/v1/alerts/al_x"),
    ):
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert client.get("/v1/alerts", params={"state": "bogus"}, headers=A).status_code == 422

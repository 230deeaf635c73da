"""Alerts through HTTP on a real `agentflow up` (embedded fleet on dramatiq-postgres) with a real
receiver on 127.0.0.1: a rule on order_count goes pending -> firing -> resolved as orders are placed
and cancelled, with exactly the firing and resolved notifications, signed (checked with the
``standardwebhooks`` package), and the transitions in its history; plus CRUD, validation, test and
tenant isolation."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook
from webhook_receiver import Receiver

from e2e.conftest import client, webhook_server
from services.child_process import AgentFlowProcess

pytestmark = pytest.mark.e2e

KEY_A, KEY_B = "al-key-a", "al-key-b"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentFlowProcess]:
    keys = f"{KEY_A}:tenant-a,{KEY_B}:tenant-b"
    data_dir = tmp_path_factory.mktemp("agentflow-alerts")
    with webhook_server(data_dir, keys, AGENTFLOW_ALERT_SWEEP_S="1") as srv:
        yield srv


def wait_state(api: httpx.Client, alert_id: str, state: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    got: dict[str, Any] = {}
    while time.monotonic() < deadline:
        got = api.get(f"/v1/alerts/{alert_id}").json()
        if got["state"] == state:
            return got
        time.sleep(0.1)
    raise AssertionError(f"alert never became {state}: {got}")


def place_order(api: httpx.Client, user_id: str, product_id: str) -> str:
    r = api.post(
        "/v1/orders",
        json={"user_id": user_id, "currency": "USD", "channel": "web",
              "lines": [{"product_id": product_id, "quantity": 1, "unit_price": "10.00"}]},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    return str(r.json()["order_id"])


def test_alert_pending_firing_resolved_with_notifications(
    server: AgentFlowProcess, receiver: Receiver
) -> None:
    with client(server, KEY_A) as api, client(server, KEY_B) as api_b:
        ep = api.post("/v1/webhooks", json={"url": receiver.base + "/alerts", "event_types": ["alert.*"]})
        assert ep.status_code == 201, ep.text
        secret, ep_id = ep.json()["secret"], ep.json()["id"]

        # validation
        base = {"name": "orders spike", "metric": "order_count", "window": "5m", "condition": "above",
                "threshold": 1, "for": "2s", "endpoint_id": ep_id}  # fmt: skip
        for bad, code in (
            ({**base, "metric": "nope"}, "unknown_metric"),
            ({**base, "window": "2m"}, "invalid_window"),
            ({**base, "condition": "sideways"}, "validation_failed"),
            ({**base, "for": "soon"}, "validation_failed"),
            ({**base, "endpoint_id": "ep_missing"}, "validation_failed"),
            ({**base, "filters": {"category": "x"}}, "invalid_dimension"),
            ({**base, "bogus": 1}, "validation_failed"),
        ):
            r = api.post("/v1/alerts", json=bad)
            assert r.status_code == 422 and r.json()["error"]["code"] == code, (bad, r.text)
        assert api_b.post("/v1/alerts", json=base).status_code == 422  # tenant b cannot target a's endpoint

        created = api.post("/v1/alerts", json={**base, "filters": {"channel": "web"}})
        assert created.status_code == 201, created.text
        alert = created.json()
        aid = alert["id"]
        assert alert["for_s"] == 2 and alert["state"] == "inactive" and alert["filters"] == {"channel": "web"}
        assert created.headers["location"] == f"/v1/alerts/{aid}"
        assert [a["id"] for a in api.get("/v1/alerts").json()["data"]] == [aid]
        assert (
            api_b.get(f"/v1/alerts/{aid}").status_code == 404 and api_b.get("/v1/alerts").json()["data"] == []
        )

        # test: a signed alert.test through the webhook path; state untouched
        t = api.post(f"/v1/alerts/{aid}/test")
        assert t.status_code == 202, t.text
        [test_rec] = receiver.wait_for("/alerts", 1)
        test_body = Webhook(secret).verify(test_rec.body, test_rec.headers)
        assert test_body["type"] == "alert.test" and test_body["data"]["alert_id"] == aid
        assert test_body["data"]["value"] == 0 and test_body["data"]["holds"] is False

        product = api.post("/v1/products", json={"name": "Pen", "category": "office", "price": "10.00",
                                                 "currency": "USD"}).json()["product_id"]  # fmt: skip
        api.post(f"/v1/products/{product}/restock", json={"quantity": 100})
        user = api.post("/v1/users", json={"name": "Ada", "region": "eu-central"}).json()["user_id"]
        orders = [place_order(api, user, product), place_order(api, user, product)]
        pending = wait_state(api, aid, "pending", timeout=10)  # the OrderPlaced events triggered it
        assert pending["last_value"] == 2
        assert len(receiver.at("/alerts")) == 1  # pending notifies nobody

        recs = receiver.wait_for("/alerts", 2, timeout=20)
        fired = Webhook(secret).verify(recs[1].body, recs[1].headers)
        assert fired["type"] == "alert.firing" and fired["tenant_id"] == "tenant-a"
        assert fired["data"]["alert_id"] == aid and fired["data"]["value"] == 2
        assert fired["data"]["previous_state"] == "pending" and fired["data"]["filters"] == {"channel": "web"}
        wait_state(api, aid, "firing", timeout=5)
        assert api.get("/v1/alerts", params={"state": "firing"}).json()["count"] == 1

        for oid in orders:
            r = api.post(f"/v1/orders/{oid}/cancel", json={"reason": "test"})
            assert r.status_code == 200, r.text
        recs = receiver.wait_for("/alerts", 3, timeout=20)
        resolved = Webhook(secret).verify(recs[2].body, recs[2].headers)
        assert resolved["type"] == "alert.resolved" and resolved["data"]["value"] <= 1
        wait_state(api, aid, "resolved", timeout=5)

        hist = api.get(f"/v1/alerts/{aid}/history").json()
        steps = [(h["from_state"], h["to_state"]) for h in reversed(hist["data"])]
        assert steps == [("inactive", "pending"), ("pending", "firing"), ("firing", "resolved")]
        by_state = {h["to_state"]: h for h in hist["data"]}
        assert by_state["pending"]["notifications"] == []
        assert by_state["firing"]["notifications"] == [recs[1].headers["webhook-id"]]
        assert by_state["resolved"]["notifications"] == [recs[2].headers["webhook-id"]]
        took = datetime.fromisoformat(by_state["firing"]["at"]) - datetime.fromisoformat(
            by_state["pending"]["at"]
        )
        assert took.total_seconds() >= 2.0  # `for`
        assert api_b.get(f"/v1/alerts/{aid}/history").status_code == 404

        # the deliveries are in the endpoint's log like any other
        log = api.get(f"/v1/webhooks/{ep_id}/deliveries").json()["data"]
        assert {d["event_type"] for d in log} == {"alert.test", "alert.firing", "alert.resolved"}
        time.sleep(2.5)
        assert len(receiver.at("/alerts")) == 3  # nothing sent twice, no re-fire

        # update: PATCH some fields, PUT the whole rule; delete
        p = api.patch(f"/v1/alerts/{aid}", json={"threshold": 5, "cooldown": "1m"})
        assert p.status_code == 200 and p.json()["threshold"] == 5 and p.json()["cooldown_s"] == 60
        assert p.json()["for_s"] == 2  # kept
        replacement = {"name": "low", "metric": "revenue", "window": "1h", "condition": "below",
                       "threshold": 100, "currency": "usd"}  # fmt: skip
        r = api.put(f"/v1/alerts/{aid}", json=replacement)
        assert r.status_code == 200, r.text
        assert r.json()["currency"] == "USD" and r.json()["for_s"] == 0 and r.json()["endpoint_id"] is None
        assert api.patch(f"/v1/alerts/{aid}", json={"window": "nope"}).status_code == 422
        assert api.delete(f"/v1/alerts/{aid}").status_code == 204
        assert api.get(f"/v1/alerts/{aid}").status_code == 404
        assert api.delete(f"/v1/alerts/{aid}").status_code == 404

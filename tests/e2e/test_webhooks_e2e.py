"""Webhooks through HTTP on a real `agentflow up` (embedded fleet on dramatiq-postgres): subscribe,
command -> signed event delivery, test ping, delivery log, 410 -> disabled, SSRF and tenant isolation."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from agentflow_process import AgentFlowProcess
from standardwebhooks import Webhook
from waiting import eventually
from webhook_receiver import Receiver, Reply

from e2e.conftest import client, webhook_server

pytestmark = pytest.mark.e2e

KEY_A, KEY_B = "wh-key-a", "wh-key-b"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentFlowProcess]:
    keys = f"{KEY_A}:tenant-a,{KEY_B}:tenant-b"
    # an attempt timeout no loaded machine reaches with a local receiver that answers at once
    with webhook_server(
        tmp_path_factory.mktemp("agentflow-wh"), keys, AGENTFLOW_WEBHOOK_TIMEOUT_S="15"
    ) as srv:
        yield srv


def deliveries(api: httpx.Client, ep_id: str) -> list[dict[str, Any]]:
    """The endpoint's delivery log, newest first."""
    return api.get(f"/v1/webhooks/{ep_id}/deliveries").json()["data"]  # type: ignore[no-any-return]


def wait_delivery(api: httpx.Client, ep_id: str, status: str) -> dict[str, Any]:
    hit = eventually(
        lambda: [d for d in deliveries(api, ep_id) if d["status"] == status],
        what=lambda: f"a {status} delivery in {deliveries(api, ep_id)}",
    )
    return hit[0]


def endpoint_ids(api: httpx.Client) -> list[str]:
    return [e["id"] for e in api.get("/v1/webhooks").json()["data"]]


def test_subscribe_command_signed_delivery_and_log(server: AgentFlowProcess, receiver: Receiver) -> None:
    with client(server, KEY_A) as api, client(server, KEY_B) as api_b:
        before, before_b = endpoint_ids(api), endpoint_ids(api_b)  # the module's other tests add theirs
        r = api.post(
            "/v1/webhooks",
            json={
                "url": receiver.base + "/products",
                "event_types": ["ProductRegistered"],
                "filters": [{"field": "price_minor", "op": ">=", "value": 1000}],
            },
        )
        assert r.status_code == 201, r.text
        ep = r.json()
        secret = ep["secret"]
        assert secret.startswith("whsec_") and ep["status"] == "active"
        assert "secret" not in api.get(f"/v1/webhooks/{ep['id']}").json()
        assert endpoint_ids(api) == [*before, ep["id"]]
        assert api_b.get(f"/v1/webhooks/{ep['id']}").status_code == 404  # another tenant's
        assert endpoint_ids(api_b) == before_b

        cheap = api.post(
            "/v1/products", json={"name": "Pen", "category": "office", "price": "2.50", "currency": "USD"}
        )
        assert cheap.status_code == 201, cheap.text
        made = api.post(
            "/v1/products", json={"name": "Lamp", "category": "home", "price": "24.90", "currency": "USD"}
        )
        assert made.status_code == 201, made.text
        [rec] = receiver.wait_for("/products", 1)
        payload = Webhook(secret).verify(rec.body, rec.headers)
        assert payload["type"] == "ProductRegistered"
        assert payload["position"] == made.json()["position"]
        assert payload["stream_id"] == made.json()["product_id"] and payload["tenant_id"] == "tenant-a"
        assert payload["data"]["price_minor"] == 2490

        d = wait_delivery(api, ep["id"], "succeeded")
        assert d["webhook_id"] == rec.headers["webhook-id"] and d["attempts"] == 1
        assert d["attempt_log"][0]["status_code"] == 200

        t = api.post(f"/v1/webhooks/{ep['id']}/test")
        assert t.status_code == 202, t.text
        recs = receiver.wait_for("/products", 2)
        assert Webhook(secret).verify(recs[1].body, recs[1].headers)["type"] == "webhook.test"
        # the cheap product never matched: the endpoint gets its deliveries in order, and the test
        # delivery (queued after the relay had handled both products) is the second and last one
        assert len(receiver.at("/products")) == 2
        assert [d["event_type"] for d in deliveries(api, ep["id"])] == ["webhook.test", "ProductRegistered"]

        assert api.delete(f"/v1/webhooks/{ep['id']}").status_code == 204
        assert api.get(f"/v1/webhooks/{ep['id']}").status_code == 404
    # the secret was stored encrypted with the key `agentflow up` made on its first start (docs/security.md)
    assert stat.S_IMODE((server.data_dir / "secret-keys").stat().st_mode) == 0o600
    assert secret not in server.log.read_text(errors="replace")


def test_retries_then_410_disables(server: AgentFlowProcess, receiver: Receiver) -> None:
    with client(server, KEY_A) as api:
        ep = api.post("/v1/webhooks", json={"url": receiver.base + "/gone"}).json()
        receiver.script("/gone", Reply(500), Reply(410))
        api.post(f"/v1/webhooks/{ep['id']}/test")
        d = wait_delivery(api, ep["id"], "failed")
        assert [a["outcome"] for a in d["attempt_log"]] == ["failed", "gone"]
        # the endpoint is disabled right after the failed attempt is recorded (its own statement)
        got = eventually(
            lambda: g if (g := api.get(f"/v1/webhooks/{ep['id']}").json())["status"] == "disabled" else None
        )
        assert "410" in got["disabled_reason"]
        # re-enable: held deliveries resume
        api.post(f"/v1/webhooks/{ep['id']}/test")
        assert api.patch(f"/v1/webhooks/{ep['id']}", json={"enabled": True}).json()["status"] == "active"
        wait_delivery(api, ep["id"], "succeeded")
        assert len(receiver.at("/gone")) == 3


def test_ssrf_and_validation(server: AgentFlowProcess) -> None:
    with client(server, KEY_A) as api:
        for url in (
            "http://169.254.169.254/latest/meta-data",
            "ftp://example.com/x",
            "http://user:pw@127.0.0.1/",
        ):
            r = api.post("/v1/webhooks", json={"url": url})
            assert r.status_code == 422, (url, r.text)
            assert r.json()["error"]["code"] == "invalid_destination"
        r = api.post(
            "/v1/webhooks", json={"url": "http://127.0.0.1:9/", "filters": [{"field": "x", "op": "~"}]}
        )
        assert r.status_code == 422
        assert api.get("/v1/webhooks/ep_missing/deliveries").status_code == 404
        assert httpx.get(f"{server.base}/v1/webhooks").status_code == 401

"""Webhooks end to end inside one process: event store -> relay (outbox) -> dramatiq-postgres -> worker
threads -> a real HTTP receiver on 127.0.0.1. Signatures are checked with the ``standardwebhooks``
package (an independent implementation)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
from sqlalchemy.engine import Engine
from standardwebhooks import Webhook
from webhook_helpers import append_order, eventually
from webhook_receiver import Receiver, Reply

from connectors.event_store import PostgresEventStore
from connectors.webhook_store import Delivery, Endpoint, WebhookStore
from services.workers import signing, ssrf
from services.workers.fleet import WebhookFleet
from services.workers.settings import WebhookSettings

pytestmark = pytest.mark.integration

FAST = WebhookSettings(
    schedule=(0, 0.3, 0.3, 0.3), timeout_s=1.0, allow_private=True, lease_margin_s=2.0,
    sweep_interval_s=0.5, worker_threads=4,
)  # fmt: skip


class Harness:
    def __init__(self, engine: Engine, url: str, settings: WebhookSettings) -> None:
        self.engine = engine
        self.fleet = WebhookFleet.embedded(url, settings, engine=engine)
        with engine.begin() as conn:  # messages left by earlier tests name endpoints that are gone
            conn.exec_driver_sql("DELETE FROM dramatiq.queue")
        self.store = PostgresEventStore(engine, notify=False)
        self.store.add_commit_listener(self.fleet.wake)
        self.hooks: WebhookStore = self.fleet.store
        self.receiver = Receiver().start()

    def endpoint(self, path: str, tenant: str = "t1", **kw: object) -> tuple[Endpoint, str]:
        secret = signing.generate_secret()
        ep = self.hooks.create_endpoint(tenant, self.receiver.base + path, secret, **kw)  # type: ignore[arg-type]
        return ep, secret

    def deliveries(self, ep: Endpoint) -> list[Delivery]:
        return self.hooks.list_deliveries(ep.tenant_id, ep.id, limit=500)

    def close(self) -> None:
        self.fleet.stop()
        self.receiver.stop()


@pytest.fixture()
def harness(engine: Engine, pg_url: str) -> Iterator[Harness]:
    h = Harness(engine, pg_url, FAST)
    h.fleet.start()
    try:
        yield h
    finally:
        h.close()


def verify(secret: str, rec: object) -> dict[str, object]:
    body = rec.body  # type: ignore[attr-defined]
    headers = rec.headers  # type: ignore[attr-defined]
    return Webhook(secret).verify(body, headers)  # type: ignore[no-any-return]


def test_event_is_delivered_signed_with_the_event_as_body(harness: Harness) -> None:
    ep, secret = harness.endpoint("/a")
    pos = append_order(harness.store, "t1", 1500)
    append_order(harness.store, "other-tenant", 1500)  # another tenant's event never reaches t1
    [rec] = harness.receiver.wait_for("/a", 1)
    payload = verify(secret, rec)
    assert payload["type"] == "OrderPlaced"
    assert payload["position"] == pos
    assert payload["tenant_id"] == "t1"
    assert payload["stream_type"] == "order"
    assert set(payload) == {
        "type",
        "id",
        "position",
        "tenant_id",
        "stream_type",
        "stream_id",
        "data",
        "occurred_at",
    }
    assert payload["data"]["total_minor"] == 1500  # type: ignore[index]
    assert rec.headers["webhook-id"].startswith("msg_")
    d = eventually(lambda: [x for x in harness.deliveries(ep) if x.status == "succeeded"])[0]
    assert d.attempts == 1 and d.position == pos and d.message_id == rec.headers["webhook-id"]
    assert d.attempt_log[0]["status_code"] == 200 and d.attempt_log[0]["response_excerpt"] == "ok"
    assert d.attempt_log[0]["latency_ms"] is not None
    time.sleep(0.5)
    assert len(harness.receiver.at("/a")) == 1


def test_filters_by_type_entity_and_payload_predicate(harness: Harness) -> None:
    big, _ = harness.endpoint(
        "/big", event_types=["OrderPlaced"], predicates=[{"field": "total_minor", "op": ">=", "value": 10000}]
    )
    one, _ = harness.endpoint("/one", entity_ids=["ORD-42"])
    other, _ = harness.endpoint("/other", event_types=["PaymentCompleted"])
    append_order(harness.store, "t1", 500)
    p_big = append_order(harness.store, "t1", 25000)
    p_42 = append_order(harness.store, "t1", 700, order_id="ORD-42")
    assert [r.json()["position"] for r in harness.receiver.wait_for("/big", 1)] == [p_big]
    assert [r.json()["position"] for r in harness.receiver.wait_for("/one", 1)] == [p_42]
    time.sleep(0.5)
    assert len(harness.receiver.at("/big")) == 1 and not harness.receiver.at("/other")
    assert harness.deliveries(other) == []


def test_failures_and_timeouts_are_retried_with_the_same_webhook_id(harness: Harness) -> None:
    ep, secret = harness.endpoint("/flaky")
    harness.receiver.script("/flaky", Reply(500, body=b"boom"), Reply(200, delay_s=2.0))  # 2nd times out
    append_order(harness.store, "t1")
    recs = harness.receiver.wait_for("/flaky", 3)
    assert len({r.headers["webhook-id"] for r in recs}) == 1
    for r in recs:
        verify(secret, r)
    d = eventually(lambda: [x for x in harness.deliveries(ep) if x.status == "succeeded"])[0]
    assert [a["outcome"] for a in d.attempt_log] == ["failed", "timeout", "succeeded"]
    assert d.attempt_log[0]["status_code"] == 500 and d.attempt_log[0]["response_excerpt"] == "boom"
    time.sleep(0.8)
    assert len(harness.receiver.at("/flaky")) == 3


def test_exhausted_after_the_last_attempt_and_visible(harness: Harness) -> None:
    ep, _ = harness.endpoint("/down")
    harness.receiver.script("/down", *[Reply(503)] * 10)
    append_order(harness.store, "t1")
    d = eventually(lambda: [x for x in harness.deliveries(ep) if x.status == "exhausted"])[0]
    assert d.attempts == len(FAST.schedule) and len(d.attempt_log) == len(FAST.schedule)
    assert d.finished_at is not None and d.last_status == 503
    time.sleep(0.8)
    assert len(harness.receiver.at("/down")) == len(FAST.schedule)


def test_410_disables_the_endpoint(harness: Harness) -> None:
    ep, _ = harness.endpoint("/gone")
    harness.receiver.script("/gone", Reply(410))
    append_order(harness.store, "t1")
    d = eventually(lambda: [x for x in harness.deliveries(ep) if x.status == "failed"])[0]
    assert d.attempt_log[0]["outcome"] == "gone"
    got = harness.hooks.get_endpoint("t1", ep.id)
    assert got is not None and got.status == "disabled" and "410" in (got.disabled_reason or "")
    append_order(harness.store, "t1")
    time.sleep(1.0)
    assert len(harness.receiver.at("/gone")) == 1 and len(harness.deliveries(ep)) == 1


def test_429_retry_after_is_honoured(engine: Engine, pg_url: str) -> None:
    # the schedule would wait a minute; the receiver asks for 1 s
    h = Harness(engine, pg_url, replace(FAST, schedule=(0, 60, 60)))
    h.fleet.start()
    try:
        ep, _ = h.endpoint("/busy")
        h.receiver.script("/busy", Reply(429, headers={"Retry-After": "1"}))
        append_order(h.store, "t1")
        recs = h.receiver.wait_for("/busy", 2, timeout=10)
        gap = recs[1].at - recs[0].at
        assert 0.9 <= gap < 5, gap
        d = eventually(lambda: [x for x in h.deliveries(ep) if x.status == "succeeded"])[0]
        assert [a["status_code"] for a in d.attempt_log] == [429, 200]
    finally:
        h.close()


def test_per_endpoint_order_by_position_survives_retries(harness: Harness) -> None:
    ep, _ = harness.endpoint("/ordered")
    fast, _ = harness.endpoint("/fast")
    harness.receiver.script("/ordered", Reply(500), Reply(500))  # the first event fails twice
    positions = [append_order(harness.store, "t1") for _ in range(6)]
    recs = harness.receiver.wait_for("/ordered", 8)
    seen = [r.json()["position"] for r in recs]
    assert seen == [positions[0]] * 3 + positions[1:], seen
    assert [r.json()["position"] for r in harness.receiver.wait_for("/fast", 6)] == positions
    eventually(
        lambda: (
            all(x.status == "succeeded" for x in harness.deliveries(ep)) and len(harness.deliveries(ep)) == 6
        )
    )


def test_committed_delivery_without_a_message_is_swept(harness: Harness) -> None:
    """A crash between commit and enqueue: the row exists, no broker message -> the sweep sends it."""
    ep, secret = harness.endpoint("/swept")
    d = harness.hooks.add_delivery(ep.id, "t1", {"type": "alert.firing", "value": 3}, "alert", "alert.firing")
    assert d is not None
    [rec] = harness.receiver.wait_for("/swept", 1, timeout=10)
    assert verify(secret, rec) == {"type": "alert.firing", "value": 3}
    assert rec.headers["webhook-id"] == d.message_id


def test_deliver_api_for_other_producers(harness: Harness) -> None:
    ep, secret = harness.endpoint("/alerts")
    d = harness.fleet.deliver(
        ep.id, "t1", {"type": "alert.resolved"}, "alert", "alert.resolved", dedup_key="r1:1"
    )
    assert d is not None
    assert (
        harness.fleet.deliver(
            ep.id, "t1", {"type": "alert.resolved"}, "alert", "alert.resolved", dedup_key="r1:1"
        )
        is None
    )
    [rec] = harness.receiver.wait_for("/alerts", 1)
    assert verify(secret, rec)["type"] == "alert.resolved"


def test_secret_rotation_signs_with_both_secrets(harness: Harness) -> None:
    ep, old = harness.endpoint("/rot")
    new = signing.generate_secret()
    assert harness.hooks.rotate_secret("t1", ep.id, new, grace_s=3600) is not None
    append_order(harness.store, "t1")
    [rec] = harness.receiver.wait_for("/rot", 1)
    assert len(rec.headers["webhook-signature"].split(" ")) == 2
    verify(old, rec)
    verify(new, rec)


def test_ssrf_private_destinations_blocked_at_delivery(engine: Engine, pg_url: str) -> None:
    with pytest.raises(ssrf.BlockedDestination):
        ssrf.resolve("http://127.0.0.1:9/x", allow_private=False)
    for url in (
        "http://10.1.2.3/",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/",
        "ftp://example.com/",
    ):
        with pytest.raises(ssrf.BlockedDestination):
            ssrf.resolve(url, allow_private=False)
    assert ssrf.resolve("http://127.0.0.1:9/x", allow_private=True).address == "127.0.0.1"
    # an endpoint that passed a check once (or whose DNS changed) is re-checked at delivery time
    h = Harness(engine, pg_url, replace(FAST, allow_private=False, schedule=(0,)))
    h.fleet.start()
    try:
        ep, _ = h.endpoint("/internal")
        append_order(h.store, "t1")
        d = eventually(lambda: [x for x in h.deliveries(ep) if x.status == "exhausted"])[0]
        assert d.attempt_log[0]["outcome"] == "blocked" and "non-public" in d.attempt_log[0]["error"]
        assert h.receiver.at("/internal") == []
    finally:
        h.close()


def test_relay_restart_loses_nothing_and_duplicates_nothing(engine: Engine, pg_url: str) -> None:
    h = Harness(engine, pg_url, FAST)
    ep, _ = h.endpoint("/restart")
    before = [append_order(h.store, "t1") for _ in range(3)]  # committed while no relay runs
    h.fleet.start()
    try:
        h.receiver.wait_for("/restart", 3)
        h.fleet.stop()
        during = [append_order(h.store, "t1") for _ in range(3)]
        h.fleet = WebhookFleet.embedded(pg_url, FAST, engine=engine)
        h.store.add_commit_listener(h.fleet.wake)
        h.fleet.start()
        recs = h.receiver.wait_for("/restart", 6)
        time.sleep(1.0)
        assert [r.json()["position"] for r in h.receiver.at("/restart")] == before + during
        assert len({r.headers["webhook-id"] for r in recs}) == 6
    finally:
        h.close()


def test_body_bytes_are_stable_json(harness: Harness) -> None:
    ep, _ = harness.endpoint("/json")
    append_order(harness.store, "t1")
    [rec] = harness.receiver.wait_for("/json", 1)
    assert json.loads(rec.body)["id"] == harness.deliveries(ep)[0].event_id

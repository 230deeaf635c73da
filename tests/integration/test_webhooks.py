"""The webhook delivery contract, run over every broker the fleet runs on -- dramatiq-postgres (embedded)
and Redis (distributed; a real ``redis-server``) -- the way dramatiq tests every broker: event store ->
relay (outbox) -> broker -> worker threads -> a real HTTP receiver on 127.0.0.1. Signatures are checked
with the ``standardwebhooks`` package (an independent implementation)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from dramatiq.broker import Broker
from redis_server import RedisServer
from secret_keys import TEST_BOX
from span_recorder import recording_spans
from sqlalchemy.engine import Engine
from standardwebhooks import Webhook
from waiting import eventually
from webhook_helpers import append_order
from webhook_receiver import Receiver, Reply

from connectors import ssrf, tracing
from connectors import webhook_signing as signing
from connectors.brokers import postgres_broker, redis_broker
from connectors.event_store import PostgresEventStore
from connectors.webhook_store import WebhookStore
from readmodels.webhooks import Delivery, Endpoint
from services.config import WebhookSettings
from services.webhooks.fleet import WebhookFleet

pytestmark = pytest.mark.integration

# quick retries; the attempt timeout is generous (a loaded machine must not turn a 200 into a timeout):
# the test that needs a timeout holds its reply until it has seen the timeout
FAST = WebhookSettings(
    schedule=(0, 0.3, 0.3, 0.3), timeout_s=10.0, allow_private=True, lease_margin_s=2.0,
    sweep_interval_s=0.5, worker_threads=4,
)  # fmt: skip


class Harness:
    def __init__(
        self, engine: Engine, url: str, settings: WebhookSettings, new_broker: Callable[[], Broker]
    ) -> None:
        self.engine = engine
        self.url = url
        self.new_broker = new_broker
        self.fleet = self.new_fleet(settings)
        self.store = PostgresEventStore(engine, notify=False)
        self.store.add_commit_listener(self.fleet.wake)
        self.hooks: WebhookStore = self.fleet.store
        self.receiver = Receiver().start()

    def new_fleet(self, settings: WebhookSettings) -> WebhookFleet:
        """A fleet on a new broker of the suite's kind (a restarted process)."""
        fleet = WebhookFleet(self.url, self.new_broker(), settings, engine=self.engine, box=TEST_BOX)
        if hasattr(self, "store"):
            self.store.add_commit_listener(fleet.wake)
        return fleet

    def endpoint(self, path: str, tenant: str = "t1", **kw: object) -> tuple[Endpoint, str]:
        secret = signing.generate_secret()
        ep = self.hooks.create_endpoint(tenant, self.receiver.base + path, secret, **kw)  # type: ignore[arg-type]
        return ep, secret

    def deliveries(self, ep: Endpoint) -> list[Delivery]:
        return self.hooks.list_deliveries(ep.tenant_id, ep.id, limit=500)

    def positions(self, path: str) -> list[int]:
        """The event positions received at ``path``, in arrival order."""
        return [r.json()["position"] for r in self.receiver.at(path)]

    def close(self) -> None:
        try:
            self.fleet.stop()
        finally:
            self.receiver.stop()


Run = Callable[..., AbstractContextManager[Harness]]


def verify(secret: str, rec: object) -> dict[str, object]:
    body = rec.body  # type: ignore[attr-defined]
    headers = rec.headers  # type: ignore[attr-defined]
    return Webhook(secret).verify(body, headers)  # type: ignore[no-any-return]


def test_ssrf_checks_destinations() -> None:
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


class WebhookDeliveryContract:
    """What every broker must give. A subclass provides ``new_broker``: a fixture returning a factory
    of brokers of its kind, all on one queue space of the test's own (nothing left by another test)."""

    @pytest.fixture()
    def new_broker(self) -> Callable[[], Broker]:
        raise NotImplementedError

    @pytest.fixture()
    def run(self, engine: Engine, pg_url: str, new_broker: Callable[[], Broker]) -> Run:
        @contextmanager
        def running(settings: WebhookSettings, start: bool = True) -> Iterator[Harness]:
            h = Harness(engine, pg_url, settings, new_broker)
            try:
                if start:
                    h.fleet.start()
                yield h
            finally:
                h.close()

        return running

    @pytest.fixture()
    def harness(self, run: Run) -> Iterator[Harness]:
        with run(FAST) as h:
            yield h

    def test_an_event_delivery_joins_the_trace_of_its_command(self, harness: Harness) -> None:
        ep, _ = harness.endpoint("/traced")
        with recording_spans() as spans:
            with tracing.span("test.command") as command:
                append_order(harness.store, "t1", 700)
            harness.receiver.wait_for("/traced", 1)
            # the span ends once the attempt's answer is read, just after the receiver saw the request
            def delivered() -> Any:
                return next((s for s in spans.get_finished_spans() if s.name == "webhook.deliver"), None)

            deliver = eventually(delivered, what="the webhook.deliver span")
        append = next(s for s in spans.get_finished_spans() if s.name == "event_store.append")
        assert deliver.context.trace_id == command.get_span_context().trace_id
        assert deliver.parent is not None and deliver.parent.span_id == append.context.span_id
        assert deliver.attributes is not None and deliver.attributes["agentflow.outcome"] == "succeeded"
        eventually(lambda: [d.status for d in harness.deliveries(ep)] == ["succeeded"])

    def test_event_is_delivered_signed_with_the_event_as_body(self, harness: Harness) -> None:
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
        # delivered once: a later event, relayed after both earlier ones, arrives right after it
        marker = append_order(harness.store, "t1")
        harness.receiver.wait_for("/a", 2)
        assert harness.positions("/a") == [pos, marker]

    def test_filters_by_type_entity_and_payload_predicate(self, harness: Harness) -> None:
        big, _ = harness.endpoint(
            "/big",
            event_types=["OrderPlaced"],
            predicates=[{"field": "total_minor", "op": ">=", "value": 10000}],
        )
        one, _ = harness.endpoint("/one", entity_ids=["ORD-42"])
        other, _ = harness.endpoint("/other", event_types=["PaymentCompleted"])
        append_order(harness.store, "t1", 500)
        p_big = append_order(harness.store, "t1", 25000)
        p_42 = append_order(harness.store, "t1", 700, order_id="ORD-42")
        assert [r.json()["position"] for r in harness.receiver.wait_for("/big", 1)] == [p_big]
        assert [r.json()["position"] for r in harness.receiver.wait_for("/one", 1)] == [p_42]
        # a later big order: the relay wrote the deliveries of every earlier event before this one's, and
        # /big gets it right after p_big
        marker = append_order(harness.store, "t1", 30000)
        harness.receiver.wait_for("/big", 2)
        assert harness.positions("/big") == [p_big, marker]
        assert [d.position for d in harness.deliveries(big)] == [marker, p_big]  # newest first
        assert [d.position for d in harness.deliveries(one)] == [p_42]
        assert harness.deliveries(other) == [] and not harness.receiver.at("/other")

    def test_failures_and_timeouts_are_retried_with_the_same_webhook_id(self, run: Run) -> None:
        hang = threading.Event()  # the 2nd answer is held until the 3rd attempt arrived: it surely times out
        with run(replace(FAST, timeout_s=3.0)) as h:
            ep, secret = h.endpoint("/flaky")
            h.receiver.script("/flaky", Reply(500, body=b"boom"), Reply(200, release=hang))
            pos = append_order(h.store, "t1")
            recs = h.receiver.wait_for("/flaky", 3)
            hang.set()
            assert len({r.headers["webhook-id"] for r in recs}) == 1
            for r in recs:
                verify(secret, r)
            d = eventually(lambda: [x for x in h.deliveries(ep) if x.status == "succeeded"])[0]
            assert [a["outcome"] for a in d.attempt_log] == ["failed", "timeout", "succeeded"]
            assert d.attempt_log[0]["status_code"] == 500 and d.attempt_log[0]["response_excerpt"] == "boom"
            # no 4th attempt: the next event is the next request
            marker = append_order(h.store, "t1")
            h.receiver.wait_for("/flaky", 4)
            assert h.positions("/flaky") == [pos, pos, pos, marker]

    def test_exhausted_after_the_last_attempt_and_visible(self, harness: Harness) -> None:
        ep, _ = harness.endpoint("/down")
        # 503 to every attempt the schedule allows; a request after those is answered 200
        harness.receiver.script("/down", *[Reply(503)] * len(FAST.schedule))
        pos = append_order(harness.store, "t1")
        d = eventually(lambda: [x for x in harness.deliveries(ep) if x.status == "exhausted"])[0]
        assert d.attempts == len(FAST.schedule) and len(d.attempt_log) == len(FAST.schedule)
        assert d.finished_at is not None and d.last_status == 503
        # no further attempt: the next event is the next request
        marker = append_order(harness.store, "t1")
        harness.receiver.wait_for("/down", len(FAST.schedule) + 1)
        assert harness.positions("/down") == [pos] * len(FAST.schedule) + [marker]

    def test_410_disables_the_endpoint(self, harness: Harness) -> None:
        ep, _ = harness.endpoint("/gone")
        harness.endpoint("/witness")  # every event: shows how far the relay got
        harness.receiver.script("/gone", Reply(410))
        first = append_order(harness.store, "t1")
        d = eventually(lambda: [x for x in harness.deliveries(ep) if x.status == "failed"])[0]
        assert d.attempt_log[0]["outcome"] == "gone"
        # the endpoint is disabled right after the failed attempt is recorded (its own statement)
        got = eventually(
            lambda: e if (e := harness.hooks.get_endpoint("t1", ep.id)) and e.status == "disabled" else None
        )
        assert "410" in (got.disabled_reason or "")
        second = append_order(harness.store, "t1")
        # the relay wrote the deliveries of `second` (the witness got it): none for the disabled endpoint
        harness.receiver.wait_for("/witness", 2)
        assert harness.positions("/witness") == [first, second]
        assert harness.positions("/gone") == [first] and [x.position for x in harness.deliveries(ep)] == [
            first
        ]

    def test_429_retry_after_is_honoured(self, run: Run) -> None:
        # the schedule would wait an hour (the retry would never come within the test); the receiver asks
        # for 1 s
        with run(replace(FAST, schedule=(0, 3600, 3600))) as h:
            ep, _ = h.endpoint("/busy")
            h.receiver.script("/busy", Reply(429, headers={"Retry-After": "1"}))
            pos = append_order(h.store, "t1")
            h.receiver.wait_for("/busy", 2)
            d = eventually(lambda: [x for x in h.deliveries(ep) if x.status == "succeeded"])[0]
            assert [a["status_code"] for a in d.attempt_log] == [429, 200]
            assert h.positions("/busy") == [pos, pos]
        first, second = d.attempt_log
        # the retry was scheduled for 1 s after the 429 was recorded, and not attempted before then
        # (the worker's and the database's timestamps: both from this machine's clock)
        retry_at = datetime.fromisoformat(first["retry_at"])
        assert retry_at - datetime.fromisoformat(first["started_at"]) >= timedelta(seconds=1)
        assert datetime.fromisoformat(second["started_at"]) >= retry_at

    def test_per_endpoint_order_by_position_survives_retries(self, harness: Harness) -> None:
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
                all(x.status == "succeeded" for x in harness.deliveries(ep))
                and len(harness.deliveries(ep)) == 6
            )
        )

    def test_committed_delivery_without_a_message_is_swept(self, harness: Harness) -> None:
        """A crash between commit and enqueue: the row exists, no broker message -> the sweep sends it."""
        ep, secret = harness.endpoint("/swept")
        d = harness.hooks.add_delivery(
            ep.id, "t1", {"type": "alert.firing", "value": 3}, "alert", "alert.firing"
        )
        assert d is not None
        [rec] = harness.receiver.wait_for("/swept", 1)
        assert verify(secret, rec) == {"type": "alert.firing", "value": 3}
        assert rec.headers["webhook-id"] == d.message_id

    def test_deliver_api_for_other_producers(self, harness: Harness) -> None:
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

    def test_secret_rotation_signs_with_both_secrets(self, harness: Harness) -> None:
        ep, old = harness.endpoint("/rot")
        new = signing.generate_secret()
        assert harness.hooks.rotate_secret("t1", ep.id, new, grace_s=3600) is not None
        append_order(harness.store, "t1")
        [rec] = harness.receiver.wait_for("/rot", 1)
        assert len(rec.headers["webhook-signature"].split(" ")) == 2
        verify(old, rec)
        verify(new, rec)

    def test_private_destinations_blocked_at_delivery(self, run: Run) -> None:
        # an endpoint that passed a check once (or whose DNS changed) is re-checked at delivery time
        with run(replace(FAST, allow_private=False, schedule=(0,))) as h:
            ep, _ = h.endpoint("/internal")
            append_order(h.store, "t1")
            d = eventually(lambda: [x for x in h.deliveries(ep) if x.status == "exhausted"])[0]
            assert d.attempt_log[0]["outcome"] == "blocked" and "non-public" in d.attempt_log[0]["error"]
            assert h.receiver.at("/internal") == []

    def test_relay_restart_loses_nothing_and_duplicates_nothing(self, run: Run) -> None:
        with run(FAST, start=False) as h:
            h.endpoint("/restart")
            before = [append_order(h.store, "t1") for _ in range(3)]  # committed while no relay runs
            h.fleet.start()
            h.receiver.wait_for("/restart", 3)
            h.fleet.stop()
            during = [append_order(h.store, "t1") for _ in range(3)]
            h.fleet = h.new_fleet(FAST)
            h.store.add_commit_listener(h.fleet.wake)
            h.fleet.start()
            h.receiver.wait_for("/restart", 6)
            # nothing sent twice: a later event is the very next request
            marker = append_order(h.store, "t1")
            recs = h.receiver.wait_for("/restart", 7)
            assert h.positions("/restart") == before + during + [marker]
            assert len({r.headers["webhook-id"] for r in recs}) == 7

    def test_body_bytes_are_stable_json(self, harness: Harness) -> None:
        ep, _ = harness.endpoint("/json")
        append_order(harness.store, "t1")
        [rec] = harness.receiver.wait_for("/json", 1)
        assert json.loads(rec.body)["id"] == harness.deliveries(ep)[0].event_id


class TestOnPostgresBroker(WebhookDeliveryContract):
    @pytest.fixture()
    def new_broker(self, engine: Engine, pg_url: str) -> Callable[[], Broker]:
        broker = postgres_broker(pg_url)  # creates the dramatiq schema
        broker.close()
        with engine.begin() as conn:  # messages left by earlier tests name endpoints that are gone
            conn.exec_driver_sql("DELETE FROM dramatiq.queue")
        return lambda: postgres_broker(pg_url)


class TestOnRedisBroker(WebhookDeliveryContract):
    @pytest.fixture()
    def new_broker(self, redis: RedisServer) -> Callable[[], Broker]:
        namespace = f"agentflow-test-{uuid.uuid4().hex[:8]}"  # this test's own queues
        return lambda: redis_broker(redis.url, namespace=namespace)

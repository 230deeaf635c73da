"""The Python SDK (sdk/python) against a real ``agentflow up``: idempotent retries of commands,
If-Match, read-your-writes (a position, or a session), typed errors, and the SSE stream with resume
and reconnect -- each once with ``Client`` and once with ``AsyncClient``."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import httpx
import pytest
from agentflow_client import (
    NO_RETRIES,
    AsyncClient,
    Client,
    NotFound,
    OrderLine,
    RetryPolicy,
    StreamEvent,
    Timeout,
    TransportError,
    Unauthorized,
    Unprocessable,
    VersionConflict,
)
from agentflow_process import AgentFlowProcess
from tcp_proxy import TcpProxy

from e2e.conftest import KEY_A

# 503 position_not_yet_applied says Retry-After: 1; how long the projector takes is not asserted here
PATIENT = RetryPolicy(max_retries=200, max_backoff=1.0)


class LosesAnswers(httpx.HTTPTransport):
    """Delivers each POST to the server, then loses the first ``lose`` answers (as a cut connection)."""

    def __init__(self, lose: int = 1) -> None:
        super().__init__()
        self.lose = lose
        self.posts: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.method == "POST":
            self.posts.append(request)
            response.read()
            if self.lose > 0:
                self.lose -= 1
                raise httpx.ReadError("answer lost", request=request)
        return response


class AsyncLosesAnswers(httpx.AsyncHTTPTransport):
    def __init__(self, lose: int = 1) -> None:
        super().__init__()
        self.lose = lose
        self.posts: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        if request.method == "POST":
            self.posts.append(request)
            await response.aread()
            if self.lose > 0:
                self.lose -= 1
                raise httpx.ReadError("answer lost", request=request)
        return response


@pytest.fixture()
def sdk(server: AgentFlowProcess) -> Iterator[Client]:
    with Client(server.base, KEY_A, retry=PATIENT) as c:
        yield c


def _stock(api: Client) -> str:
    product = api.register_product(name="SDK widget", category="sdk", price="5.00", currency="EUR")
    api.restock_product(product.product_id, 1000)
    return product.product_id


def _line(product_id: str) -> list[OrderLine]:
    return [OrderLine(product_id, 1, "5.00")]


# ---- commands --------------------------------------------------------------------------------------


def test_a_command_whose_answer_was_lost_is_retried_with_its_key_and_applied_once(
    server: AgentFlowProcess, sdk: Client
) -> None:
    pid, user = _stock(sdk), sdk.register_user(name="Retry").user_id
    lossy = LosesAnswers(lose=1)
    with Client(server.base, KEY_A, retry=PATIENT, transport=lossy, sleep=lambda s: None) as api:
        ack = api.place_order(user_id=user, lines=_line(pid), currency="EUR")
        assert len(lossy.posts) == 2  # the lost answer, then the retry with the same key
        keys = {r.headers["Idempotency-Key"] for r in lossy.posts}
        assert len(keys) == 1 and uuid.UUID(keys.pop())
        timeline = sdk.timeline(ack.order_id)
        assert [e.event_type for e in timeline.events].count("OrderPlaced") == 1  # applied once
        assert timeline.last_position <= ack.position and ack.stream_version == 1

        lossy.lose = 1  # without a key the command is not sent again: the caller learns it is unknown
        with pytest.raises(TransportError):
            api.register_user(name="No key", idempotency_key=False)
        assert "Idempotency-Key" not in lossy.posts[-1].headers and len(lossy.posts) == 3

    first = sdk.confirm_order(ack.order_id, idempotency_key=f"confirm-{ack.order_id}")
    again = sdk.confirm_order(ack.order_id, idempotency_key=f"confirm-{ack.order_id}")
    assert again == first  # the original answer, no new event


def test_if_match_conflict_is_a_typed_error(sdk: Client) -> None:
    pid, user = _stock(sdk), sdk.register_user().user_id
    ack = sdk.place_order(user_id=user, lines=_line(pid), currency="EUR", channel="sdk")
    with pytest.raises(VersionConflict) as caught:
        sdk.confirm_order(ack.order_id, if_match=ack.stream_version + 5)
    err = caught.value
    assert err.status == 409 and err.code == "version_conflict" and err.request_id
    confirmed = sdk.confirm_order(ack.order_id, if_match=ack.stream_version)
    assert confirmed.stream_version == ack.stream_version + 1


def test_reads_see_the_callers_writes(sdk: Client) -> None:
    pid, user = _stock(sdk), sdk.register_user().user_id
    ack = sdk.place_order(user_id=user, lines=_line(pid), currency="EUR")
    order = sdk.entity("order", ack.order_id, min_position=ack.position)
    assert order.meta.as_of_position >= ack.position and order.data["status"] == "pending"
    assert order.data["total_amount"] == 5.0 and order.data["currency"] == "EUR"

    session = sdk.session()
    placed = session.place_order(user_id=user, lines=_line(pid), currency="EUR")
    confirmed = session.confirm_order(placed.order_id)
    assert session.position == confirmed.position > placed.position
    seen = session.entity("order", placed.order_id)  # min_position = the session's last write
    assert seen.data["status"] == "confirmed" and seen.meta.as_of_position >= confirmed.position
    buyer = session.entity("user", user)
    assert buyer.data["total_orders"] == 2
    revenue = session.metric("revenue", "1h", currency="EUR")
    assert revenue.value >= 10.0 and revenue.unit and revenue.meta.as_of_position >= confirmed.position


def test_errors_carry_code_details_and_request_id(server: AgentFlowProcess, sdk: Client) -> None:
    with pytest.raises(NotFound) as nf:
        sdk.metric("no_such_metric", "1h")
    assert nf.value.code == "unknown_metric" and "revenue" in nf.value.details["available"]
    assert nf.value.request_id and nf.value.correlation_id
    with pytest.raises(Unprocessable) as bad:
        sdk.metric("revenue", "2m")
    assert bad.value.code == "invalid_window"
    with Client(server.base, "not-a-key") as stranger, pytest.raises(Unauthorized) as denied:
        stranger.catalog()
    assert denied.value.code == "unauthorized" and denied.value.status == 401
    # the server holds a read for a position not yet written (up to its bound): past our timeout, Timeout
    impatient = httpx.Timeout(10.0, read=0.3)
    with Client(server.base, KEY_A, timeout=impatient, retry=NO_RETRIES) as hasty, pytest.raises(Timeout):
        hasty.metric("revenue", "1h", min_position=10**12)


# ---- the event stream ------------------------------------------------------------------------------


def test_stream_resumes_after_an_id_and_reconnects_after_a_drop(
    server: AgentFlowProcess, sdk: Client
) -> None:
    pid, user = _stock(sdk), sdk.register_user().user_id
    start = sdk.restock_product(pid, 1).position
    first = sdk.place_order(user_id=user, lines=_line(pid), currency="EUR")
    with TcpProxy(server.port) as proxy, Client(proxy.base, KEY_A, retry=PATIENT) as via_proxy:
        stream = via_proxy.stream_events(entity_type="order", last_event_id=start, heartbeat=1.0)
        events = iter(stream)
        got: list[StreamEvent] = [next(events)]  # replayed from the store: after `start`
        # an order's ack carries the position of the command's last event (its stock reservation)
        assert got[0].event == "OrderPlaced" and got[0].data["entity_id"] == first.order_id
        assert start < got[0].id < first.position
        proxy.drop()
        second = sdk.place_order(user_id=user, lines=_line(pid), currency="EUR")
        got.append(next(events))  # after a reconnect with Last-Event-ID: nothing twice, nothing missed
        stream.close()
    assert got[1].data["entity_id"] == second.order_id and first.position < got[1].id < second.position
    assert stream.reconnects >= 1 and proxy.accepted >= 2 and stream.last_event_id == got[1].id

    bounded = list(sdk.stream_events(entity_type="order", last_event_id=start, max_events=2))
    assert [e.data["entity_id"] for e in bounded] == [first.order_id, second.order_id]


# ---- the async twins --------------------------------------------------------------------------------


def test_async_client(server: AgentFlowProcess, sdk: Client) -> None:
    pid, user = _stock(sdk), sdk.register_user().user_id

    async def scenario() -> None:
        lossy = AsyncLosesAnswers(lose=1)

        async def no_wait(_: float) -> None:
            return None

        async with AsyncClient(server.base, KEY_A, retry=PATIENT, transport=lossy, sleep=no_wait) as api:
            ack = await api.place_order(user_id=user, lines=_line(pid), currency="EUR")
            assert len(lossy.posts) == 2 and len({r.headers["Idempotency-Key"] for r in lossy.posts}) == 1
            lossy.lose = 1
            with pytest.raises(TransportError):
                await api.register_user(idempotency_key=False)
            assert len(lossy.posts) == 3

        async with AsyncClient(server.base, KEY_A, retry=PATIENT) as api:
            timeline = await api.timeline(ack.order_id)
            assert [e.event_type for e in timeline.events].count("OrderPlaced") == 1
            with pytest.raises(VersionConflict):
                await api.confirm_order(ack.order_id, if_match=9)
            session = api.session()
            confirmed = await session.confirm_order(ack.order_id, if_match=ack.stream_version)
            seen = await session.entity("order", ack.order_id)
            assert seen.data["status"] == "confirmed" and seen.meta.as_of_position >= confirmed.position
            read = await api.entity("order", ack.order_id, min_position=confirmed.position)
            assert read.data["status"] == "confirmed"
            with pytest.raises(NotFound) as nf:
                await api.entity("order", "ORD-NOPE-0000")
            assert nf.value.code == "entity_not_found" and nf.value.request_id

            second = await api.place_order(user_id=user, lines=_line(pid), currency="EUR")
            with TcpProxy(server.port) as proxy:
                async with AsyncClient(proxy.base, KEY_A, retry=PATIENT) as via_proxy:
                    stream = via_proxy.stream_events(entity_type="order", last_event_id=ack.position,
                                                     heartbeat=1.0)  # fmt: skip
                    got: list[StreamEvent] = []
                    third = None
                    async for event in stream:  # replayed: the confirmation, the second order; then live
                        got.append(event)
                        if event.data["entity_id"] == second.order_id:
                            proxy.drop()
                            third = await api.place_order(user_id=user, lines=_line(pid), currency="EUR")
                        if len(got) == 3:
                            break
                    await stream.aclose()
            assert third is not None
            assert [(e.event, e.data["entity_id"]) for e in got] == [
                ("OrderConfirmed", ack.order_id),
                ("OrderPlaced", second.order_id),
                ("OrderPlaced", third.order_id),
            ]
            assert got[0].id == confirmed.position and stream.reconnects >= 1

    asyncio.run(scenario())


def test_every_command_method_reaches_its_endpoint(sdk: Client) -> None:
    pid, user = _stock(sdk), sdk.register_user(email="u@example.com", region="EU").user_id
    assert sdk.change_price(pid, "6.00").product_id == pid
    assert sdk.adjust_stock(pid, -1, "damage").product_id == pid
    held = sdk.reserve_stock(pid, "ORD-SDK-HOLD", 2)
    assert sdk.release_stock(pid, "ORD-SDK-HOLD", 2).stream_version == held.stream_version + 1
    order = sdk.place_order(user_id=user, lines=_line(pid), currency="EUR", order_id="ORD-SDK-0001")
    payment = sdk.initiate_payment(order_id=order.order_id, amount="5.00", currency="EUR")
    assert sdk.complete_payment(payment.payment_id).payment_id == payment.payment_id
    assert sdk.confirm_order(order.order_id).order_id == "ORD-SDK-0001"
    sdk.ship_order(order.order_id)
    delivered = sdk.deliver_order(order.order_id)
    refunded = sdk.refund_payment(payment.payment_id, "1.00")
    assert refunded.position > delivered.position
    other = sdk.place_order(user_id=user, lines=_line(pid), currency="EUR")
    failing = sdk.initiate_payment(order_id=other.order_id, amount="5.00", currency="EUR", method="wallet")
    assert sdk.fail_payment(failing.payment_id, "declined").stream_version == failing.stream_version + 1
    assert sdk.cancel_order(other.order_id, "changed my mind").order_id == other.order_id
    clicks = sdk.record_session_event("SES-SDK-1", type="page_view", page_url="/p", user_id=user)
    assert clicks.session_id == "SES-SDK-1" and clicks.stream_version >= 1
    final = sdk.session()
    last = final.refund_order(order.order_id, "2.00", restock=False)
    assert final.entity("order", order.order_id).meta.as_of_position >= last.position

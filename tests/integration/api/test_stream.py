"""GET /v1/stream/events in process: Server-Sent Events of applied events, in position order, filtered,
resumable from Last-Event-ID, per tenant, at most AGENTFLOW_SSE_MAX_STREAMS at once.

The test client hands over a response once the stream ends, so every stream here is bounded by
``max_events``. A stream's start is fixed when it takes its slot (the tenant's count of open streams
goes up): a live test waits for that before writing what the stream must deliver.
"""

from __future__ import annotations

import threading
from typing import Any

from litestar.testing import TestClient
from waiting import eventually

from services.bootstrap import Container

from .conftest import A, B
from .shop_commands import act, order, product, user
from .sse import frames


def _stream(c: TestClient[Any], h: dict[str, str], **params: Any) -> tuple[list[dict[str, Any]], list[str]]:
    resp = c.get("/v1/stream/events", params=params, headers=h)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert resp.headers["cache-control"] == "no-cache"
    return frames(resp.text)


def _shop(c: TestClient[Any]) -> tuple[str, str, int]:
    """A product and a user of tenant A, and the position after them."""
    pid, _ = product(c, A, "Streamed")
    uid, pos = user(c, A, "Sse User")
    return pid, uid, pos


def test_a_stream_resumes_after_last_event_id_in_position_order(client: TestClient[Any]) -> None:
    pid, uid, before = _shop(client)
    oid, placed = order(client, A, uid, pid)
    confirmed = act(client, A, f"/v1/orders/{oid}/confirm")
    cancelled = act(client, A, f"/v1/orders/{oid}/cancel", {"reason": "test"})
    events, comments = _stream(client, A, event_type="order", max_events=3, last_event_id=before)
    assert comments[0] == f": stream open at position {before}"
    assert [e["event"] for e in events] == ["OrderPlaced", "OrderConfirmed", "OrderCancelled"]
    ids = [e["id"] for e in events]
    assert ids == sorted(ids) and before < ids[0] <= placed and ids[1] == confirmed and ids[2] <= cancelled
    first = events[0]["data"]
    assert first["type"] == first["event_type"] == "OrderPlaced" and first["position"] == ids[0]
    assert (
        first["stream_type"] == first["entity_type"] == "order"
        and first["stream_id"] == first["entity_id"] == oid
    )
    assert (
        first["tenant_id"] == "tenant-a"
        and first["data"]["order_id"] == oid
        and first["id"] == first["event_id"]
    )
    assert first["stream_version"] == 1 and first["occurred_at"].endswith("Z")
    # the Last-Event-ID header resumes the same way; entity filters narrow it
    resp = client.get("/v1/stream/events", params={"entity_type": "order", "entity_id": oid, "max_events": 2},
                      headers={**A, "Last-Event-ID": str(ids[0])})  # fmt: skip
    assert [e["id"] for e in frames(resp.text)[0]] == ids[1:]
    only, _ = _stream(client, A, event_type="OrderCancelled", entity_id=oid, last_event_id=0, max_events=1)
    assert [e["event"] for e in only] == ["OrderCancelled"]
    # entity_id alone also matches events that name the entity (the stock the order reserved, released)
    stock, _ = _stream(client, A, entity_id=oid, event_type="product", last_event_id=before, max_events=2)
    assert [e["event"] for e in stock] == ["StockReserved", "StockReleased"]
    assert all(e["data"]["data"]["order_id"] == oid and e["data"]["stream_id"] == pid for e in stock)


def test_a_stream_without_a_resume_point_sends_what_is_applied_after_it_opened(
    client: TestClient[Any], app_container: Container
) -> None:
    pid, uid, _ = _shop(client)
    slots = app_container.stream_slots
    got: dict[str, Any] = {}

    def listen() -> None:
        got["resp"] = client.get(
            "/v1/stream/events", params={"event_type": "order", "max_events": 2}, headers=A
        )

    listener = threading.Thread(target=listen)
    listener.start()
    try:
        eventually(lambda: slots.open("tenant-a") == 1, what="the stream never took its slot")
        oid, _ = order(client, A, uid, pid)
        confirmed = act(client, A, f"/v1/orders/{oid}/confirm")
    finally:
        listener.join(timeout=120)
    assert not listener.is_alive(), "the stream never delivered its 2 events"
    events, comments = frames(got["resp"].text)
    opened = int(comments[0].rsplit(" ", 1)[1])
    assert [e["event"] for e in events] == ["OrderPlaced", "OrderConfirmed"]
    assert opened < events[0]["id"] and events[1]["id"] == confirmed
    assert all(e["data"]["stream_id"] == oid for e in events)
    assert slots.open("tenant-a") == 0  # an ended stream gives its slot back


def test_a_tenant_streams_only_its_own_events(client: TestClient[Any]) -> None:
    _, _, before = _shop(client)
    product(client, A, "Interleaved")  # tenant A's events between the resume point and B's
    bpid, _ = product(client, B, "Theirs")
    events, _ = _stream(client, B, last_event_id=before, max_events=2)
    assert [e["event"] for e in events] == ["ProductRegistered", "StockReceived"]
    assert {(e["data"]["tenant_id"], e["data"]["stream_id"]) for e in events} == {("tenant-b", bpid)}


def test_malformed_streams_are_422_and_a_key_is_required(client: TestClient[Any]) -> None:
    for params, headers in [
        ({"event_type": "Nope"}, {}),
        ({"entity_type": "planet"}, {}),
        ({}, {"Last-Event-ID": "x"}),
        ({}, {"Last-Event-ID": "-1"}),
        ({"last_event_id": "abc"}, {}),
        ({"max_events": 0}, {}),
        ({"heartbeat": "soon"}, {}),
    ]:
        r = client.get("/v1/stream/events", params=params, headers={**A, **headers})
        assert r.status_code == 422 and r.json()["detail"], (params, headers)
    bad = client.get("/v1/stream/events", params={"event_type": "order,Nope"}, headers=A)
    assert bad.json()["error"]["code"] == "invalid_filter" and "Nope" in bad.json()["detail"]
    assert client.get("/v1/stream/events").status_code == 401


def test_a_tenant_with_every_slot_taken_gets_429(client: TestClient[Any], app_container: Container) -> None:
    slots = app_container.stream_slots
    held = 0
    try:
        while slots.acquire("tenant-a"):  # what the tenant's open streams hold
            held += 1
        assert held == slots.limit == app_container.settings.sse_max_streams
        r = client.get("/v1/stream/events", params={"max_events": 1}, headers=A)
        assert r.status_code == 429 and r.headers["Retry-After"] == "5"
        assert r.json()["error"]["code"] == "too_many_streams" and r.json()["error"]["details"] == {
            "limit": held
        }
        # another tenant has its own slots
        bpid, _ = product(client, B, "Own slots")
        events, _ = _stream(client, B, last_event_id=0, entity_id=bpid, max_events=1)
        assert events[0]["data"]["stream_id"] == bpid
    finally:
        for _ in range(held):
            slots.release("tenant-a")
    assert slots.open("tenant-a") == 0 and slots.open("tenant-b") == 0

"""The rest of the read surface through HTTP on a real `agentflow up`: batch, search, lineage,
changelog, the SSE event stream and SLOs.

The tests share one server in any order. A stream's slot is freed when the server notices the client
went away, a moment after the client closed it: opening a stream asks again while it answers 429
too_many_streams, and only the test that holds every slot itself expects that 429.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from agentflow_process import AgentFlowProcess
from waiting import eventually

from e2e.conftest import KEY_A, client

SSE_HANG_S = 120.0  # bounds a stream that never delivers what the test waits for: not a latency bound


def _ok(resp: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    return body


def _product(api: httpx.Client, name: str, category: str = "gadgets") -> tuple[str, int]:
    body = _ok(api.post("/v1/products", json={"name": name, "category": category, "price": "9.50",
                                              "currency": "USD"}), 201)  # fmt: skip
    pid = body["product_id"]
    pos = _ok(api.post(f"/v1/products/{pid}/restock", json={"quantity": 100}))["position"]
    return pid, pos


def _order(api: httpx.Client, user: str, pid: str) -> tuple[str, int]:
    body = _ok(
        api.post(
            "/v1/orders",
            json={"user_id": user, "currency": "USD", "channel": "web",
                  "lines": [{"product_id": pid, "quantity": 2, "unit_price": "9.50"}]},
        ),
        201,
    )  # fmt: skip
    return body["order_id"], body["position"]


def _user(api: httpx.Client, name: str, email: str | None = None) -> str:
    payload = {"name": name, "region": "eu-central"}
    if email:
        payload["email"] = email
    return str(_ok(api.post("/v1/users", json=payload), 201)["user_id"])


# ---- batch --------------------------------------------------------------------------------------
def test_batch_runs_items_with_per_item_errors(api: httpx.Client, api_b: httpx.Client) -> None:
    pid, pos = _product(api, "Batchable")
    _ok(api.get(f"/v1/entity/product/{pid}", params={"min_position": pos}))  # applied: items need not wait
    requests = [
        {"id": "p", "type": "entity",
         "params": {"entity_type": "product", "entity_id": pid, "min_position": pos}},
        {"id": "m", "type": "metric", "params": {"name": "order_count", "window": "1h"}},
        {"id": "missing", "type": "entity", "params": {"entity_type": "product", "entity_id": "PROD-999999"}},
        {"id": "badwin", "type": "metric", "params": {"name": "revenue", "window": "3y"}},
        {"id": "badtype", "type": "teleport", "params": {}},
        {"id": "noid", "type": "entity", "params": {"entity_type": "product"}},
    ]  # fmt: skip
    body = _ok(api.post("/v1/batch", json={"requests": requests}))
    assert isinstance(body["duration_ms"], float)
    results = {r["id"]: r for r in body["results"]}
    assert [r["id"] for r in body["results"]] == [r["id"] for r in requests]
    direct = _ok(api.get(f"/v1/entity/product/{pid}"))
    assert results["p"]["status"] == "ok" and results["p"]["error"] is None
    assert results["p"]["data"]["data"] == direct["data"]
    assert results["m"]["status"] == "ok" and results["m"]["data"]["metric_name"] == "order_count"
    assert results["missing"]["status"] == "error" and results["missing"]["status_code"] == 404
    assert "not found" in results["missing"]["error"]
    assert results["badwin"]["status"] == "error" and results["badwin"]["status_code"] == 422
    assert results["badtype"]["status"] == "error" and "type must be" in results["badtype"]["error"]
    assert results["noid"]["status"] == "error" and results["noid"]["data"] is None
    # the items run as the caller's tenant: tenant B cannot read tenant A's product through a batch
    other = _ok(api_b.post("/v1/batch", json={"requests": requests[:1]}))["results"][0]
    assert other["status"] == "error" and other["status_code"] == 404
    # at most 20 items; malformed bodies are 422
    many = [{"id": str(i), "type": "metric", "params": {"name": "order_count"}} for i in range(21)]
    assert api.post("/v1/batch", json={"requests": many}).status_code == 422
    assert api.post("/v1/batch", json={"requests": many[:20]}).status_code == 200
    assert api.post("/v1/batch", json={"nope": []}).status_code == 422
    assert api.post("/v1/batch", json={"requests": []}, headers={"X-API-Key": "bad"}).status_code == 401


# ---- search -------------------------------------------------------------------------------------
def test_search_finds_entities_metrics_and_fields_per_tenant_as_events_apply(
    api: httpx.Client, api_b: httpx.Client
) -> None:
    word = "zq" + uuid.uuid4().hex[:8]
    pid, pos = _product(api, f"Quantum {word} Lamp", category="lighting")
    body = _ok(api.get("/v1/search", params={"q": word, "min_position": pos}))
    assert body["query"] == word
    hit = body["results"][0]
    assert hit == {
        "type": "entity",
        "id": pid,
        "entity_type": "product",
        "score": 1.0,
        "snippet": f"Product Quantum {word} Lamp ({pid}), category lighting",
        "endpoint": f"/v1/entity/product/{pid}",
    }
    assert body["meta"]["as_of_position"] >= pos
    # tenant-filtered
    assert all(r["id"] != pid for r in _ok(api_b.get("/v1/search", params={"q": word}))["results"])
    # updated as events apply (the tenant's index already exists now): a new user and their order
    email = f"{word}@example.com"
    user = _user(api, f"Ada {word}", email)
    oid, opos = _order(api, user, pid)
    found = _ok(api.get("/v1/search", params={"q": email, "min_position": opos, "limit": 5}))["results"]
    assert found[0]["id"] == user and found[0]["entity_type"] == "user"
    orders = _ok(api.get("/v1/search", params={"q": user, "entity_types": "order", "min_position": opos}))
    assert [r["id"] for r in orders["results"]] == [oid]
    # status changes move the order doc
    spos = _ok(api.post(f"/v1/orders/{oid}/cancel", json={"reason": "test"}))["position"]
    res = _ok(api.get("/v1/search", params={"q": f"{oid} cancelled", "min_position": spos}))["results"]
    assert res[0]["id"] == oid and "cancelled" in res[0]["snippet"]
    # prefix match on words
    assert any(r["id"] == pid for r in _ok(api.get("/v1/search", params={"q": "quantu"}))["results"])
    # metrics and catalog fields come from the contracts
    metrics = _ok(api.get("/v1/search", params={"q": "refund rate"}))["results"]
    assert metrics[0]["type"] == "metric" and metrics[0]["id"] == "refund_rate"
    assert metrics[0]["endpoint"] == "/v1/metrics/refund_rate"
    fields = _ok(api.get("/v1/search", params={"q": "preferred category", "entity_types": "user"}))["results"]
    assert fields[0]["type"] == "catalog_field" and fields[0]["id"] == "user.preferred_category"
    assert all(r["type"] != "metric" for r in fields)
    assert api.get("/v1/search", params={"q": "x"}).status_code == 422
    assert api.get("/v1/search", params={"q": "ok", "entity_types": "planet"}).status_code == 422
    assert api.get("/v1/search", params={"q": "ok", "limit": 500}).status_code == 422


# ---- lineage ------------------------------------------------------------------------------------
def test_lineage_lists_the_events_positions_and_stages_that_built_the_row(
    api: httpx.Client, api_b: httpx.Client
) -> None:
    pid, _ = _product(api, "Traceable")
    user = _user(api, "Lin Eage")
    oid, placed = _order(api, user, pid)
    confirmed = _ok(api.post(f"/v1/orders/{oid}/confirm", json={}))["position"]
    pay = _ok(
        api.post(
            "/v1/payments", json={"order_id": oid, "amount": "19.00", "currency": "USD", "method": "card"}
        ),
        201,
    )["payment_id"]
    _ok(api.post(f"/v1/payments/{pay}/complete"))
    shipped = _ok(api.post(f"/v1/orders/{oid}/ship", json={}))["position"]
    body = _ok(api.get(f"/v1/lineage/order/{oid}", params={"min_position": shipped}))
    assert body["entity_type"] == "order" and body["entity_id"] == oid
    assert [e["type"] for e in body["events"]] == [
        "OrderPlaced",
        "OrderConfirmed",
        "OrderPaymentCaptured",
        "OrderShipped",
    ]
    got = [e["position"] for e in body["events"]]
    # a command answers the position of its append's last event (placing also reserves stock)
    assert got == sorted(got) and got[0] <= placed and confirmed in got and got[-1] == shipped
    assert [e["stream_version"] for e in body["events"]] == [1, 2, 3, 4]
    for e in body["events"]:
        assert e["status"] == "applied" and e["in_read_model_row"] is True
        assert e["applied_at"] is not None and e["durations_ms"]["recorded_to_applied"] >= 0
        assert e["correlation_id"] and e["actor"] == "api-key:tenant-a"
    layers = {n["layer"]: n for n in body["lineage"]}
    assert list(layers)[:4] == ["source", "event_store", "validation", "serving"]
    assert layers["serving"]["table_or_topic"] == "orders" and layers["serving"]["position"] == shipped
    assert layers["event_store"]["position"] == shipped
    assert layers["validation"]["quality_score"] == 1.0 and body["validated"] is True
    assert body["read_model"]["row_version"] == shipped and body["read_model"]["contract"]["name"] == "order"
    assert layers["api"]["position"] >= shipped
    # another entity type: the product's stream (registered, restocked, reserved by the order)
    prod = _ok(api.get(f"/v1/lineage/product/{pid}"))
    assert [e["type"] for e in prod["events"]][:3] == ["ProductRegistered", "StockReceived", "StockReserved"]
    assert prod["read_model"]["table"] == "products"
    again = api.get(f"/v1/lineage/order/{oid}").json()["events"]
    keys = ("position", "event_id", "type", "applied_at", "recorded_at")
    assert [[e[k] for k in keys] for e in again] == [[e[k] for k in keys] for e in body["events"]]
    assert api_b.get(f"/v1/lineage/order/{oid}").status_code == 404
    assert api.get("/v1/lineage/order/ORD-20000101-9999").status_code == 404
    assert api.get(f"/v1/lineage/planet/{oid}").status_code == 404


# ---- changelog ----------------------------------------------------------------------------------
def test_changelog_is_newest_first_cursor_paginated_and_tenant_scoped(
    api: httpx.Client, api_b: httpx.Client
) -> None:
    pid, _ = _product(api, "Changeling")
    user = _user(api, "Change Log")
    oid, placed = _order(api, user, pid)
    confirmed = _ok(api.post(f"/v1/orders/{oid}/confirm", json={}))["position"]
    first = _ok(api.get("/v1/changelog", params={"limit": 2, "min_position": confirmed}))
    assert first["latest_version"] == str(first["meta"]["as_of_position"])
    positions = [c["position"] for c in first["changes"]]
    assert positions == sorted(positions, reverse=True) and positions[0] >= confirmed
    assert first["has_more"] is True and first["next_cursor"] == str(positions[-1])
    assert first["versions"][0]["status"] == "latest" and first["versions"][0]["changes"]
    second = _ok(api.get("/v1/changelog", params={"limit": 2, "cursor": first["next_cursor"]}))
    assert max(c["position"] for c in second["changes"]) < positions[-1]
    # filtered to one entity: exactly its events, newest first
    mine = _ok(api.get("/v1/changelog", params={"entity_type": "order", "entity_id": oid}))
    assert [c["event_type"] for c in mine["changes"]] == ["OrderConfirmed", "OrderPlaced"]
    assert mine["changes"][0]["position"] == confirmed and mine["changes"][1]["position"] <= placed
    assert mine["has_more"] is False and mine["next_cursor"] is None
    assert mine["changes"][0]["summary"] == f"order {oid}: OrderConfirmed (position {confirmed})"
    only = _ok(api.get("/v1/changelog", params={"event_type": "OrderPlaced", "limit": 5}))
    assert {c["event_type"] for c in only["changes"]} == {"OrderPlaced"}
    # tenant B never sees tenant A's changes
    theirs = _ok(api_b.get("/v1/changelog", params={"entity_id": oid}))
    assert theirs["changes"] == []
    assert api.get("/v1/changelog", params={"cursor": "abc"}).status_code == 422
    assert api.get("/v1/changelog", params={"event_type": "Nope"}).status_code == 422


# ---- SSE ----------------------------------------------------------------------------------------
@contextmanager
def _stream(c: httpx.Client, **kw: Any) -> Iterator[httpx.Response]:
    """GET /v1/stream/events, asking again while the tenant's slots are still held by streams that
    were closed a moment ago (429 too_many_streams); the response is closed on exit."""

    def attempt() -> tuple[Any, httpx.Response] | None:
        cm = c.stream("GET", "/v1/stream/events", **kw)
        resp = cm.__enter__()
        if resp.status_code != 429:
            return cm, resp
        resp.read()
        cm.__exit__(None, None, None)
        return None if resp.json()["error"]["code"] == "too_many_streams" else (cm, resp)

    cm, resp = eventually(attempt, what="a stream slot of the tenant was never freed")
    try:
        yield resp
    finally:
        cm.__exit__(None, None, None)


def _read_sse(resp: httpx.Response, want: int) -> tuple[list[dict[str, Any]], list[str]]:
    """Parse SSE frames until ``want`` events (or the server ends the stream)."""
    events: list[dict[str, Any]] = []
    comments: list[str] = []
    frame: dict[str, str] = {}
    hang = time.monotonic() + SSE_HANG_S  # heartbeats keep an idle stream open forever
    for line in resp.iter_lines():
        assert time.monotonic() < hang, f"only {len(events)} of {want} events: {events}"
        if line.startswith(":"):
            comments.append(line)
        elif line == "":
            if "data" in frame:
                events.append({"id": frame.get("id"), "event": frame.get("event"),
                               "data": json.loads(frame["data"])})  # fmt: skip
                if len(events) >= want:
                    break
            frame = {}
        else:
            key, _, value = line.partition(": ")
            frame[key] = value
    return events, comments


def _opened_at(comments: list[str]) -> int:
    """The position a stream without a resume point starts after (its first comment)."""
    assert comments and comments[0].startswith(": stream open at position "), comments
    return int(comments[0].rsplit(" ", 1)[1])


def test_stream_sends_applied_events_in_position_order_filtered_and_resumable(
    server: AgentFlowProcess, api: httpx.Client
) -> None:
    pid, _ = _product(api, "Streamed")
    user = _user(api, "Sse User")
    positions: list[int] = []

    with client(server, KEY_A) as c, _stream(c, params={"event_type": "order", "max_events": 3}) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        # the stream's start is fixed when it answers: what is written now arrives live
        oid, p = _order(api, user, pid)
        positions.append(p)
        for action in ("confirm", "cancel"):
            positions.append(_ok(api.post(f"/v1/orders/{oid}/{action}", json={}))["position"])
        events, comments = _read_sse(resp, 3)
    assert [e["event"] for e in events] == ["OrderPlaced", "OrderConfirmed", "OrderCancelled"]
    ids = [int(e["id"]) for e in events]
    assert _opened_at(comments) < ids[0]
    # a command answers its append's last position (placing/cancelling also reserve/release stock)
    assert ids == sorted(ids) and ids[0] <= positions[0] and ids[1] == positions[1] and ids[2] <= positions[2]
    first = events[0]["data"]
    assert first["type"] == "OrderPlaced" and first["position"] == ids[0]
    assert first["stream_type"] == "order" and first["stream_id"] == oid and first["tenant_id"] == "tenant-a"
    assert first["data"]["order_id"] == oid and first["id"] and first["occurred_at"]

    # resume after the first event: the rest replays from the store, filtered by entity
    with client(server, KEY_A) as c:
        headers = {"Last-Event-ID": str(ids[0])}
        params: dict[str, Any] = {"entity_type": "order", "entity_id": oid, "max_events": 2}
        with _stream(c, params=params, headers=headers) as resp:
            replay, _ = _read_sse(resp, 2)
    assert [int(e["id"]) for e in replay] == ids[1:]
    # filter by event type name and entity; heartbeats while idle
    with client(server, KEY_A) as c:
        params2 = {"event_type": "OrderCancelled", "entity_id": oid, "last_event_id": "0"}
        with _stream(c, params=params2) as resp:
            only, _ = _read_sse(resp, 1)
            assert [e["event"] for e in only] == ["OrderCancelled"]
        # entity_id alone also matches events that name the entity (the stock released for the order)
        params3 = {"entity_id": oid, "event_type": "product", "last_event_id": str(ids[0] - 1)}
        with _stream(c, params={**params3, "max_events": 2}) as resp:
            stock, _ = _read_sse(resp, 2)
            assert {e["event"] for e in stock} == {"StockReserved", "StockReleased"}
            assert all(e["data"]["data"]["order_id"] == oid for e in stock)
    assert api.get("/v1/stream/events", params={"event_type": "Nope"}).status_code == 422
    assert api.get("/v1/stream/events", headers={"Last-Event-ID": "x"}).status_code == 422


def test_stream_heartbeats_and_bounds_streams_per_tenant(
    server: AgentFlowProcess, api_b: httpx.Client
) -> None:
    clients = [client(server, KEY_A) for _ in range(6)]
    streams = []
    try:
        for c in clients[:5]:  # every slot of the tenant (freed ones of earlier tests: asked again)
            cm = _stream(c, params={"heartbeat": "0.5"})
            resp = cm.__enter__()
            streams.append(cm)
            assert resp.status_code == 200
            if len(streams) == 1:
                lines = resp.iter_lines()
                seen = [next(lines) for _ in range(5)]
                assert any(line.startswith(": heartbeat") for line in seen), seen
        extra = clients[5].get("/v1/stream/events")
        assert extra.status_code == 429 and extra.json()["error"]["code"] == "too_many_streams"
        # another tenant has its own bound
        with _stream(api_b, params={"max_events": 1, "heartbeat": "0.5"}) as r:
            assert r.status_code == 200
        # closing a stream frees its slot
        streams.pop().__exit__(None, None, None)

        def slot_free() -> bool:
            with clients[5].stream("GET", "/v1/stream/events", params={"max_events": 1}) as r:
                return r.status_code == 200

        eventually(slot_free, what="slot not released after disconnect")
    finally:
        for cm in streams:
            cm.__exit__(None, None, None)
        for c in clients:
            c.close()


# ---- SLO ----------------------------------------------------------------------------------------
def test_slo_reports_measured_latency_freshness_and_errors(api: httpx.Client) -> None:
    _, pos = _product(api, "Sloth")
    _ok(api.get("/v1/metrics/order_count", params={"window": "1h", "min_position": pos}))
    start = _ok(api.get("/v1/slo"))  # the tests before this one (any order) were measured too
    start_slos = {s["name"]: s for s in start["slos"]}
    for _ in range(5):  # applied already: each answers at once
        _ok(api.get("/v1/metrics/order_count", params={"window": "1h", "min_position": pos}))

    def measured(total: int) -> dict[str, Any]:
        """The report once the last request is counted (a request is recorded as its answer leaves)."""
        body = _ok(api.get("/v1/slo"))
        read_total = {s["name"]: s for s in body["slos"]}["api_read_latency"]["events"]["total"]
        return body if read_total >= total else {}

    start_reads = start_slos["api_read_latency"]["events"]["total"]
    body = eventually(lambda: measured(start_reads + 5), what="the 5 reads counted in api_read_latency")
    slos = {s["name"]: s for s in body["slos"]}
    assert {"api_read_latency", "api_command_latency", "freshness", "api_availability"} <= set(slos)
    read = slos["api_read_latency"]
    assert read["events"]["total"] >= 5 and read["threshold"] == 100.0 and read["target"] == 0.99
    assert read["percentiles"]["p50"] is not None
    assert slos["api_command_latency"]["events"]["total"] >= 2
    fresh = slos["freshness"]
    assert fresh["events"]["total"] >= 2 and fresh["threshold_unit"] == "s"
    for s in body["slos"]:
        assert 0.0 <= s["error_budget_remaining"] <= 1.0
        assert s["status"] in ("healthy", "at_risk", "breached")
        assert set(s["burn_rates"]) == {"1h", "6h"}
        assert 0.0 <= s["current"] <= 1.0 and s["window_days"] == 1
    # no server error while this test ran; the burn rate is the bad fraction over the error budget
    # (0 when the server never answered 5xx, e.g. a read-your-writes 503 of an earlier test)
    avail = slos["api_availability"]
    assert avail["events"]["bad"] == start_slos["api_availability"]["events"]["bad"]
    errors_1h = body["error_rates_1h"]
    assert errors_1h["server_errors"] == start["error_rates_1h"]["server_errors"]
    expected_burn = errors_1h["server_errors"] / errors_1h["requests"] / (1 - avail["target"])
    assert avail["burn_rates"]["1h"] == pytest.approx(expected_burn, abs=1e-4)
    # a rejected command is measured as a rejection, not a server error
    ship = api.post("/v1/orders/ORD-20000101-0001/ship", json={})
    assert ship.status_code in (404, 409)
    assert api.post("/v1/products", json={"name": ""}).status_code == 422
    rejected = 1 + (ship.status_code == 409)  # a 404 is not a rejection

    def rejections_counted() -> dict[str, Any]:
        report = _ok(api.get("/v1/slo"))
        got = report["error_rates_1h"]["command_rejections"]
        return report if got >= errors_1h["command_rejections"] + rejected else {}

    after = eventually(rejections_counted, what="the rejected commands counted")
    assert after["error_rates_1h"]["command_rejections"] == errors_1h["command_rejections"] + rejected
    assert after["error_rates_1h"]["server_errors"] == errors_1h["server_errors"]

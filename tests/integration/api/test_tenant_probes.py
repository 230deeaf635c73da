"""Cross-tenant probes of what names no object of the other tenant in its path, in process on real Postgres.

- The SSE stream (``GET /v1/stream/events``): tenant B's stream, live (the applied-events hub) or resumed
  from a position older than the hub's buffer (replayed from the event store), while tenant A writes,
  carries B's events only. A stream is read until B's own marker event: it is bounded by ``max_events`` =
  the number of events B wrote, so one event of A's before B's marker would take a place and push the
  marker out (events arrive in position order, and A wrote before the marker). Filters naming an id that
  both tenants use (A's order, product, user, payment and session all carry it) match B's only.
- Commands naming A's aggregates: B sends transitions on A's order, product and payment ids, with the
  If-Match versions A's streams are at and the Idempotency-Keys A used, then creates aggregates of its own
  under A's ids. B's answers are those of B's own world (404, 409 ``unknown_*``, a version conflict at
  version 0, a new aggregate at version 1, never A's replayed answer); A's events, idempotency records
  and rejections in Postgres, A's entity reads and A's replays are unchanged.
- Pagination cursors (``GET /v1/changelog``, ``GET /v1/deadletter``, ``POST /v1/query`` with ``sql`` and
  with ``metrics``): A's cursors replayed by B give B's own page (computed here from Postgres), or 400
  ``invalid_cursor`` for a query's (bound to its query and tenant); a property over any cursor (A's, A's
  mutated, integers around A's positions and letter ids, forged query tokens, deeply nested JSON, any
  text) never answers 500 and never shows B anything of A's.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient
from sqlalchemy import text
from waiting import eventually
from webhook_helpers import append_order

from connectors.dead_letters import DeadLetter
from services.bootstrap import Container

from .conftest import A, B
from .shop_commands import ok
from .sse import frames

# ---- helpers ------------------------------------------------------------------------------------


def _tag() -> str:
    return uuid.uuid4().hex[:8]


def _product(c: TestClient[Any], h: dict[str, str], pid: str, name: str, stock: int) -> tuple[int, int]:
    """Register ``pid`` and receive ``stock`` units: (the registration's position, the restock's)."""
    body = {"product_id": pid, "name": name, "category": "probe", "price": "9.50", "currency": "USD"}
    registered = ok(c.post("/v1/products", json=body, headers=h), 201)
    assert registered["product_id"] == pid
    restocked = ok(c.post(f"/v1/products/{pid}/restock", json={"quantity": stock}, headers=h))
    return int(registered["position"]), int(restocked["position"])


def _user(c: TestClient[Any], h: dict[str, str], uid: str, name: str, email: str) -> int:
    body = ok(c.post("/v1/users", json={"user_id": uid, "name": name, "email": email}, headers=h), 201)
    assert body["user_id"] == uid
    return int(body["position"])


def _order(c: TestClient[Any], h: dict[str, str], oid: str, uid: str, pid: str, quantity: int) -> int:
    lines = [{"product_id": pid, "quantity": quantity, "unit_price": "9.50"}]
    body = {"order_id": oid, "user_id": uid, "currency": "USD", "channel": "web", "lines": lines}
    placed = ok(c.post("/v1/orders", json=body, headers=h), 201)
    assert placed["order_id"] == oid
    return int(placed["position"])


def _session_event(c: TestClient[Any], h: dict[str, str], sid: str, page: str) -> int:
    r = c.post(f"/v1/sessions/{sid}/events", json={"type": "page_view", "page_url": page}, headers=h)
    assert r.status_code in (200, 201), r.text
    return int(r.json()["position"])


@dataclass(frozen=True)
class Shop:
    """One tenant's product, user, order (confirmed), payment and session, and the texts only it wrote."""

    product: str
    user: str
    order: str
    payment: str
    session: str
    name: str
    email: str

    @property
    def ids(self) -> list[str]:
        return [self.product, self.user, self.order, self.payment, self.session]


def _a_shop(c: TestClient[Any], ids: dict[str, str] | None = None) -> Shop:
    """Tenant A writes one of everything (ids: client-chosen, unique unless ``ids`` says otherwise)."""
    tag = _tag()
    names = {k: f"{k[:3].upper()}-A-{tag}" for k in ("product", "user", "order", "payment", "session")}
    names.update(ids or {})
    shop = Shop(**names, name=f"A-only lamp {tag}", email=f"a-{tag}@tenant-a.example")
    _product(c, A, shop.product, shop.name, 50)
    _user(c, A, shop.user, "Ada A", shop.email)
    _order(c, A, shop.order, shop.user, shop.product, 2)
    ok(c.post(f"/v1/orders/{shop.order}/confirm", json={}, headers=A))
    pay = {"payment_id": shop.payment, "order_id": shop.order, "amount": "19.00", "currency": "USD",
           "method": "card"}  # fmt: skip
    ok(c.post("/v1/payments", json=pay, headers=A), 201)
    _session_event(c, A, shop.session, f"/a/{tag}")
    return shop


class Listener:
    """``GET /v1/stream/events`` in a thread: the test client answers once the stream ends (max_events)."""

    def __init__(self, c: TestClient[Any], h: dict[str, str], params: dict[str, Any]) -> None:
        self.got: dict[str, Any] = {}
        self.thread = threading.Thread(
            target=lambda: self.got.update(resp=c.get("/v1/stream/events", params=params, headers=h)),
            daemon=True,
        )
        self.thread.start()

    def events(self) -> tuple[list[dict[str, Any]], str]:
        self.thread.join(timeout=120)
        assert not self.thread.is_alive(), "the stream never delivered its max_events"
        resp = self.got["resp"]
        assert resp.status_code == 200, resp.text
        return frames(resp.text)[0], resp.text


def _open_stream(c: TestClient[Any], container: Container, params: dict[str, Any]) -> Listener:
    """B's live stream, once it holds its slot (its start position is fixed then)."""
    slots = container.stream_slots
    held = slots.open("tenant-b")
    listener = Listener(c, B, params)
    eventually(lambda: slots.open("tenant-b") == held + 1, what="B's stream never took its slot")
    return listener


def _assert_only_b(
    events: list[dict[str, Any]], body: str, expected: list[tuple[int, str, str]], shops: list[Shop]
) -> None:
    """B's stream is exactly B's events (position, type, stream id), and nothing of A's is in it: no text
    only A wrote, no id of A's (but an id B uses too)."""
    assert [(e["id"], e["event"], e["data"]["stream_id"]) for e in events] == expected, events
    assert {e["data"]["tenant_id"] for e in events} == {"tenant-b"}
    b_ids = {stream_id for _, _, stream_id in expected}
    for a in shops:
        assert a.name not in body and a.email not in body
        assert not [i for i in a.ids if i in body and i not in b_ids], body


# ---- SSE ----------------------------------------------------------------------------------------


def _b_writes_around(c: TestClient[Any], between: Callable[[], Any]) -> list[tuple[int, str, str]]:
    """B registers a product (2 events), ``between()`` runs (A writes more), then B's marker: a user.
    B's events as (position, type, stream id)."""
    tag = _tag()
    pid, uid = f"PROD-B-{tag}", f"USR-B-{tag}"
    registered, restocked = _product(c, B, pid, f"B lamp {tag}", 5)
    between()
    marker = _user(c, B, uid, "Bo B", f"b-{tag}@tenant-b.example")
    return [(registered, "ProductRegistered", pid), (restocked, "StockReceived", pid),
            (marker, "UserRegistered", uid)]  # fmt: skip


def test_b_live_stream_carries_nothing_of_a(client: TestClient[Any], app_container: Container) -> None:
    listener = _open_stream(client, app_container, {"max_events": 3})
    shops = [_a_shop(client)]
    expected = _b_writes_around(client, lambda: shops.append(_a_shop(client)))
    events, body = listener.events()
    _assert_only_b(events, body, expected, shops)


def test_b_stream_resumed_from_the_event_store_carries_nothing_of_a(
    client: TestClient[Any], app_container: Container
) -> None:
    """A resume point older than the hub's buffer is replayed from the event store (EventFeed.replay)."""
    hub = app_container.hub
    start = app_container.event_feed.bound()
    capacity = hub.capacity
    hub.capacity = 1  # the hub keeps the newest event only: ``start`` falls out of its buffer
    try:
        shops = [_a_shop(client)]
        expected = _b_writes_around(client, lambda: shops.append(_a_shop(client)))
        eventually(lambda: hub.watermark >= expected[-1][0], what="B's marker is never applied")
        assert hub.since(start) is None  # the stream must replay from the store
        r = client.get("/v1/stream/events", params={"max_events": 3},
                       headers={**B, "Last-Event-ID": str(start)})  # fmt: skip
    finally:
        hub.capacity = capacity
    assert r.status_code == 200, r.text
    _assert_only_b(frames(r.text)[0], r.text, expected, shops)


@pytest.mark.parametrize(
    "flt",
    [{"entity_id": "{id}"}, {"entity_type": "session", "entity_id": "{id}"},
     {"event_type": "clickstream", "entity_id": "{id}"}],  # fmt: skip
    ids=["entity_id", "session stream", "clickstream category"],
)
def test_b_stream_filtered_on_an_id_both_tenants_use_carries_nothing_of_a(
    client: TestClient[Any], app_container: Container, flt: dict[str, str]
) -> None:
    shared = f"SHARED-{_tag()}"
    params: dict[str, Any] = {k: v.format(id=shared) for k, v in flt.items()}
    listener = _open_stream(client, app_container, {**params, "max_events": 1})
    # every event of A's names ``shared``: its product, user, order, payment and session all are ``shared``
    a = _a_shop(client, dict.fromkeys(("product", "user", "order", "payment", "session"), shared))
    marker = _session_event(client, B, shared, "/b")  # B's own session of that id: its first event
    events, body = listener.events()
    _assert_only_b(events, body, [(marker, "PageViewed", shared)], [a])
    assert events[0]["data"]["data"]["page_url"] == "/b"


# ---- commands naming A's aggregates ---------------------------------------------------------------


def _rows(container: Container, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with container.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params).all()]


def _a_at_rest(container: Container, ids: list[str], keys: list[str]) -> dict[str, Any]:
    """A's events of ``ids``, A's idempotency records of ``keys`` and A's rejection count, from Postgres."""
    return {
        "events": _rows(
            container,
            "SELECT position, stream_type, stream_id, stream_version, event_type, event_id::text, "
            "data::text, metadata::text FROM events WHERE tenant_id = 'tenant-a' AND stream_id = ANY(:ids) "
            "ORDER BY position", ids=ids,
        ),  # fmt: skip
        "idempotency": _rows(
            container,
            "SELECT key, request_hash, status_code, response::text FROM idempotency_keys "
            "WHERE tenant_id = 'tenant-a' AND key = ANY(:keys) ORDER BY key", keys=keys,
        ),  # fmt: skip
        "rejections": _rows(
            container, "SELECT count(*) FROM command_rejections WHERE tenant_id = 'tenant-a'"
        ),
    }


def _entity(c: TestClient[Any], h: dict[str, str], kind: str, eid: str, position: int) -> dict[str, Any]:
    got = ok(c.get(f"/v1/entity/{kind}/{eid}", params={"min_position": position}, headers=h))
    return {"data": got["data"], "last_updated": got["last_updated"]}


def _error(r: Any, status: int, code: str) -> dict[str, Any]:
    """The refusal ``status``/``code`` (never a replayed answer); its body."""
    assert r.status_code == status and "Idempotent-Replayed" not in r.headers, (r.status_code, r.text)
    doc: dict[str, Any] = r.json()
    assert doc["error"]["code"] == code, r.text
    return doc


def test_b_commands_on_a_aggregate_ids_touch_only_b_world(
    client: TestClient[Any], app_container: Container
) -> None:
    tag = _tag()
    p, u, o, pay, s = (f"{k}-A-{tag}" for k in ("PROD", "USR", "ORD", "PAY", "SES"))
    k_register, k_confirm = f"a-register-{tag}", f"a-confirm-{tag}"
    register = {"product_id": p, "name": f"A lamp {tag}", "category": "probe", "price": "9.50",
                "currency": "USD"}  # fmt: skip
    # A: product p (registered with k_register, restocked 50, 2 reserved by o: version 3), user u, order o
    # (placed, confirmed with k_confirm: version 2), payment pay (version 1), session s
    a_registered = client.post("/v1/products", json=register, headers={**A, "Idempotency-Key": k_register})
    a_register = ok(a_registered, 201)
    ok(client.post(f"/v1/products/{p}/restock", json={"quantity": 50}, headers=A))
    _user(client, A, u, "Ada A", f"a-{tag}@tenant-a.example")
    _order(client, A, o, u, p, 2)
    confirmed = client.post(f"/v1/orders/{o}/confirm", json={}, headers={**A, "Idempotency-Key": k_confirm})
    a_confirm = ok(confirmed)
    payment = {"payment_id": pay, "order_id": o, "amount": "19.00", "currency": "USD", "method": "card"}
    a_last = ok(client.post("/v1/payments", json=payment, headers=A), 201)["position"]
    a_last = max(a_last, _session_event(client, A, s, "/a"))
    ids, keys = [p, u, o, pay, s], [k_register, k_confirm]
    at_rest = _a_at_rest(app_container, ids, keys)
    assert len(at_rest["events"]) == 8 and len(at_rest["idempotency"]) == 2  # 3 + 1 + 2 + 1 + 1 events
    a_reads = {kind: _entity(client, A, kind, eid, a_last)
               for kind, eid in (("product", p), ("user", u), ("order", o), ("session", s))}  # fmt: skip
    assert (a_reads["product"]["data"]["stock_quantity"], a_reads["product"]["data"]["reserved"]) == (48, 2)

    # 1. B's world has none of these aggregates
    def b(path: str, body: Any = None, **headers: str) -> Any:
        return client.post(path, json=body if body is not None else {}, headers={**B, **headers})

    for path, body in ((f"/v1/orders/{o}/cancel", {"reason": "b"}), (f"/v1/orders/{o}/ship", None),
                       (f"/v1/products/{p}/restock", {"quantity": 1}),
                       (f"/v1/products/{p}/reserve", {"order_id": o, "quantity": 1}),
                       (f"/v1/payments/{pay}/complete", None)):  # fmt: skip
        _error(b(path, body), 404, "not_found")
        _error(b(path, body, **{"If-Match": "0"}), 404, "not_found")
    # A's versions: a conflict with B's version of the stream, 0 (nothing of A's version is told)
    for path, body, version in ((f"/v1/orders/{o}/cancel", {"reason": "b"}, 2),
                                (f"/v1/products/{p}/price", {"price": "1.00"}, 3),
                                (f"/v1/payments/{pay}/fail", {"reason": "b"}, 1)):  # fmt: skip
        r = b(path, body, **{"If-Match": str(version)})
        doc = _error(r, 409, "version_conflict")
        assert doc["error"]["details"] == {"current_version": 0, "expected_version": version}
        assert r.headers["ETag"] == '"0"'
    # A's Idempotency-Keys: B's own (unused) keys -- not A's answer replayed, not "reused with another body"
    _error(b(f"/v1/orders/{o}/confirm", None, **{"Idempotency-Key": k_confirm}), 404, "not_found")
    _error(b(f"/v1/orders/{o}/cancel", {"reason": "b"}, **{"Idempotency-Key": k_register}), 404, "not_found")
    # creations that name A's aggregates as their references
    b_tag = _tag()
    b_product, b_user = f"PROD-B-{b_tag}", f"USR-B-{b_tag}"
    _product(client, B, b_product, "B's own", 3)
    _user(client, B, b_user, "Bo B", f"b-{b_tag}@tenant-b.example")
    lines = [{"product_id": p, "quantity": 1, "unit_price": "9.50"}]
    r = b("/v1/orders", {"user_id": u, "currency": "USD", "lines": lines})
    _error(r, 409, "unknown_user")
    r = b("/v1/orders", {"user_id": b_user, "currency": "USD", "lines": lines})
    _error(r, 409, "unknown_product")
    r = b("/v1/payments", {**payment, "payment_id": f"PAY-B-{b_tag}"})
    _error(r, 409, "unknown_order")

    # 2. B creates aggregates of its own under A's ids, A's exact register body and Idempotency-Key included
    r = b("/v1/products", register, **{"Idempotency-Key": k_register})
    b_register = ok(r, 201)
    assert "Idempotent-Replayed" not in r.headers
    assert b_register["product_id"] == p and b_register["stream_version"] == 1
    assert b_register["position"] > a_last  # a new event of B's, not A's answer
    again = b("/v1/products", register, **{"Idempotency-Key": k_register})  # B's own key now: B's answer
    assert again.headers.get("Idempotent-Replayed") == "true" and ok(again, 201) == b_register
    r = b(f"/v1/products/{p}/restock", {"quantity": 7}, **{"If-Match": "3"})  # A's version, not B's (1)
    assert _error(r, 409, "version_conflict")["error"]["details"]["current_version"] == 1
    assert ok(b(f"/v1/products/{p}/restock", {"quantity": 7}, **{"If-Match": "1"}))["stream_version"] == 2
    assert ok(b("/v1/users", {"user_id": u, "name": "Bo B"}), 201)["stream_version"] == 1
    b_placed = ok(b("/v1/orders", {"order_id": o, "user_id": u, "currency": "USD", "lines": lines}), 201)
    assert (b_placed["order_id"], b_placed["stream_version"]) == (o, 1)
    r = b(f"/v1/orders/{o}/confirm", None, **{"Idempotency-Key": k_confirm})
    b_confirm = ok(r)
    assert "Idempotent-Replayed" not in r.headers and b_confirm["stream_version"] == 2
    assert b_confirm["position"] > a_confirm["position"]
    b_pay = ok(b("/v1/payments", {**payment, "amount": "9.50"}), 201)
    assert (b_pay["payment_id"], b_pay["stream_version"]) == (pay, 1)
    b_last = _session_event(client, B, s, "/b")

    # A: nothing changed, at rest or as read; A's keys still replay A's own answers
    assert _a_at_rest(app_container, ids, keys) == at_rest
    for kind, eid in (("product", p), ("user", u), ("order", o), ("session", s)):
        assert _entity(client, A, kind, eid, b_last) == a_reads[kind], kind
    replay = client.post("/v1/products", json=register, headers={**A, "Idempotency-Key": k_register})
    assert replay.headers.get("Idempotent-Replayed") == "true" and ok(replay, 201) == a_register
    replay = client.post(f"/v1/orders/{o}/confirm", json={}, headers={**A, "Idempotency-Key": k_confirm})
    assert replay.headers.get("Idempotent-Replayed") == "true" and ok(replay) == a_confirm
    # B's rows of those ids are B's, at B's versions; B reads its own aggregates
    b_rows = _rows(
        app_container, "SELECT tenant_id, stream_id, max(stream_version) FROM events "
        "WHERE tenant_id <> 'tenant-a' AND stream_id = ANY(:ids) GROUP BY 1, 2", ids=ids,
    )  # fmt: skip
    # p: registered, restocked, reserved by B's o; o: placed, confirmed
    assert sorted(b_rows) == sorted([("tenant-b", p, 3), ("tenant-b", u, 1), ("tenant-b", o, 2),
                                     ("tenant-b", pay, 1), ("tenant-b", s, 1)])  # fmt: skip
    b_product_read = _entity(client, B, "product", p, b_last)["data"]
    assert (b_product_read["stock_quantity"], b_product_read["reserved"]) == (6, 1)
    b_order_read = _entity(client, B, "order", o, b_last)["data"]
    assert (b_order_read["total_amount"], b_order_read["status"]) == (9.5, "confirmed")


# ---- pagination cursors ---------------------------------------------------------------------------

# the cursor-paginated routes: GET /v1/changelog, GET /v1/deadletter, POST /v1/query (SQL, and metrics)
QUERIES: dict[str, dict[str, Any]] = {
    "sql": {"sql": "SELECT product_id, tenant_id FROM products ORDER BY product_id"},
    "metrics": {"metrics": ["order_count"], "dimensions": ["channel"]},
}
ROUTES = ["changelog", "deadletter", *QUERIES]
NESTED = base64.urlsafe_b64encode(b"[" * 3000).decode()  # JSON nested deeper than a decoder recurses


def _ask(
    c: TestClient[Any], route: str, cursor: Any, h: dict[str, str] = B, limit: int = 2, **params: Any
) -> Any:
    """``h`` asks ``route`` for the page after ``cursor`` (None: the first page)."""
    if route in QUERIES:
        body = {**QUERIES[route], "limit": limit, "cursor": cursor}
        return c.post("/v1/query", json=body, params=params, headers=h)
    query = {"limit": limit, **params, **({"cursor": cursor} if cursor is not None else {})}
    return c.get(f"/v1/{route}", params=query, headers=h)


def _letter(container: Container, tenant: str, order_id: str) -> tuple[int, str]:
    """A dead letter of ``tenant`` for a stored OrderPlaced of ``order_id``: (its id, the event's id)."""
    position = append_order(container.store, tenant, 1500, order_id=order_id)
    [event] = container.store.read_all(position - 1, limit=1)
    letter = DeadLetter(
        "embedded", "validate", "sum of lines != total_minor", event_id=str(event.event_id),
        position=position, tenant_id=tenant, event_type="OrderPlaced",
        record={"event_id": str(event.event_id), "data": event.data},
    )  # fmt: skip
    assert container.dead_letters.add([letter]) == 1
    [stored] = _rows(container, "SELECT id FROM dead_letters WHERE event_id = :e", e=str(event.event_id))
    return int(stored[0]), str(event.event_id)


def _token(body: Any) -> str:
    """A cursor as POST /v1/query writes one: URL-safe base64 of JSON, unpadded."""
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")


def _untoken(cursor: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))


@dataclass(frozen=True)
class Cursors:
    a_cursors: dict[str, list[str]]  # route -> the next_cursors A's pages handed out
    a_texts: list[str]  # what only A wrote: ids, order channels, event ids
    a_letters: set[int]
    a_numbers: list[int]  # A's positions and dead-letter ids
    fingerprints: list[str]  # the "f" of A's and B's query cursors


def _shop_for_cursors(c: TestClient[Any], h: dict[str, str], prefix: str) -> list[str]:
    """3 products, a user and 2 orders on 2 channels of the tenant's own: the ids and channels."""
    products = [f"PROD-{prefix}-{i}" for i in range(3)]
    for pid in products:
        _product(c, h, pid, f"lamp {prefix}", 4)
    uid = f"USR-{prefix}"
    _user(c, h, uid, "Cursor User", f"{prefix.lower()}@example.com")
    orders, channels = [f"ORD-{prefix}-{i}" for i in range(2)], [f"ch-{prefix.lower()}-{i}" for i in range(2)]
    for oid, channel in zip(orders, channels, strict=True):
        lines = [{"product_id": products[0], "quantity": 1, "unit_price": "9.50"}]
        body = {"order_id": oid, "user_id": uid, "currency": "USD", "channel": channel, "lines": lines}
        ok(c.post("/v1/orders", json=body, headers=h), 201)
    return [*products, uid, *orders, *channels]


@pytest.fixture(scope="module")
def cursors(client: TestClient[Any], app_container: Container) -> Cursors:
    tag = _tag()
    a_written = _shop_for_cursors(client, A, f"AC-{tag}")
    _shop_for_cursors(client, B, f"BC-{tag}")
    a_orders = [f"ORD-AL-{tag}-{i}" for i in range(3)]
    a_letters = [_letter(app_container, "tenant-a", oid) for oid in a_orders]
    for i in range(2):
        _letter(app_container, "tenant-b", f"ORD-BL-{tag}-{i}")
    last = int(_rows(app_container, "SELECT max(position) FROM events")[0][0])

    def walk(route: str, h: dict[str, str], pages: int = 6) -> list[str]:
        out: list[str] = []
        doc = ok(_ask(client, route, None, h, 1, min_position=last))
        while doc["next_cursor"] and len(out) < pages:
            out.append(doc["next_cursor"])
            doc = ok(_ask(client, route, doc["next_cursor"], h, 1, min_position=last))
        return out

    a_cursors = {route: walk(route, A) for route in ROUTES}
    assert all(len(v) >= 2 for v in a_cursors.values()), a_cursors
    # B's own query cursors page through B's rows: a 400 for A's is about the tenant, not the cursor
    b_query = [walk(route, B, 1) for route in QUERIES]
    assert all(b_query), b_query
    firsts = [a_cursors["sql"][0], a_cursors["metrics"][0], *(c for cs in b_query for c in cs)]
    fingerprints = [_untoken(c)["f"] for c in firsts]
    a_events = _rows(app_container, "SELECT event_id::text FROM events WHERE tenant_id = 'tenant-a' "
                     "AND stream_id = ANY(:ids)", ids=[*a_written, *a_orders])  # fmt: skip
    return Cursors(
        a_cursors=a_cursors,
        a_texts=[*a_written, *a_orders, *(e for (e,) in a_events)],
        a_letters={i for i, _ in a_letters},
        a_numbers=[*(int(c) for c in a_cursors["changelog"]), *(i for i, _ in a_letters)],
        fingerprints=fingerprints,
    )


def _tenants_of(container: Container, table: str, column: str, values: list[Any]) -> set[str]:
    sql = f"SELECT DISTINCT tenant_id FROM {table} WHERE {column} = ANY(:v)"  # table, column: constants
    return {r[0] for r in _rows(container, sql, v=values)}


def _assert_nothing_of_a(container: Container, w: Cursors, route: str, cursor: Any, r: Any) -> None:
    """B's answer is never a 500, holds only B's objects (their tenant read back from Postgres) and none
    of A's texts (unless B sent that text itself, in the cursor)."""
    assert r.status_code in (200, 400, 422), (route, cursor, r.status_code, r.text)
    for value in w.a_texts:
        assert value not in r.text or value in str(cursor), (route, cursor, value)
    if r.status_code != 200:
        return
    doc = r.json()
    if route == "changelog":
        found = [c["event_id"] for c in doc["changes"]]
        assert _tenants_of(container, "events", "event_id::text", found) <= {"tenant-b"}, doc
    elif route == "deadletter":
        letters = [d["id"] for d in doc["data"]]
        assert {d["tenant_id"] for d in doc["data"]} <= {"tenant-b"} and not set(letters) & w.a_letters
        assert _tenants_of(container, "dead_letters", "id", letters) <= {"tenant-b"}, doc
    elif route == "sql":
        assert {row["tenant_id"] for row in doc["rows"]} <= {"tenant-b"}, doc


def test_a_cursors_replayed_by_b_give_b_own_pages(
    client: TestClient[Any], app_container: Container, cursors: Cursors
) -> None:
    for cursor in cursors.a_cursors["changelog"]:  # B's events below A's position, newest first
        r = _ask(client, "changelog", cursor)
        _assert_nothing_of_a(app_container, cursors, "changelog", cursor, r)
        doc = r.json()
        expected = _rows(
            app_container, "SELECT position FROM events WHERE tenant_id = 'tenant-b' AND position < :c "
            "AND position <= :wm ORDER BY position DESC LIMIT 2",
            c=int(cursor), wm=doc["meta"]["as_of_position"],
        )  # fmt: skip
        assert [c["position"] for c in doc["changes"]] == [p for (p,) in expected], cursor
    for cursor in cursors.a_cursors["deadletter"]:  # B's letters below A's letter id, newest first
        r = _ask(client, "deadletter", cursor)
        _assert_nothing_of_a(app_container, cursors, "deadletter", cursor, r)
        expected = _rows(app_container, "SELECT id FROM dead_letters WHERE tenant_id = 'tenant-b' "
                         "AND id < :c ORDER BY id DESC LIMIT 2", c=int(cursor))  # fmt: skip
        assert [d["id"] for d in r.json()["data"]] == [i for (i,) in expected], cursor
    for route in QUERIES:  # a query cursor is bound to its query and tenant
        for cursor in cursors.a_cursors[route]:
            r = _ask(client, route, cursor)
            assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_cursor"), r.text
            _assert_nothing_of_a(app_container, cursors, route, cursor, r)
    # a cursor of JSON nested deeper than the decoder recurses: refused, not a 500
    for route in QUERIES:
        r = _ask(client, route, NESTED)
        assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_cursor"), (route, r.text)
    assert _ask(client, "changelog", NESTED).json()["error"]["code"] == "invalid_cursor"
    r = _ask(client, "deadletter", NESTED)
    assert r.status_code == 422, r.text


def _cursor_strategy(w: Cursors, route: str) -> st.SearchStrategy[Any]:
    """Any cursor: A's (any route's), A's mutated, numbers around A's positions and letter ids, huge
    numbers, forged query tokens (A's and B's fingerprints), deeply nested JSON, any text."""
    theirs = [c for cs in w.a_cursors.values() for c in cs]
    lo, hi = min(w.a_numbers), max(w.a_numbers)
    tags = ["null", "Bool", "Int64", "UInt64", "Float64", "String", "DateTime64(6, 'UTC')", "Date32", "Nope"]
    scalar = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.text(max_size=12),
                       st.floats(allow_nan=False))  # fmt: skip
    key = st.lists(st.one_of(st.tuples(st.sampled_from(tags), scalar).map(list), scalar), max_size=4)
    forged = st.builds(
        lambda v, f, rest: _token({"v": v, "f": f, **rest}),
        st.sampled_from([1, 1, 2, "1"]),
        st.sampled_from(w.fingerprints),
        st.one_of(st.fixed_dictionaries({"o": st.one_of(st.integers(-(2**70), 2**70), scalar)}),
                  st.fixed_dictionaries({"k": key, "s": st.one_of(st.integers(-5, 2**40), scalar)})),
    )  # fmt: skip
    strings = st.one_of(
        st.sampled_from(theirs),
        st.tuples(st.sampled_from(theirs), st.sampled_from(["0", "=", " ", "-", "=="])).map("".join),
        st.sampled_from(theirs).map(lambda c: c[:-1]),
        st.integers(lo - 5, hi + 5).map(str),
        st.integers(-(2**70), 2**70).map(str),
        forged,
        st.just(NESTED),
        st.binary(max_size=64).map(lambda b: base64.urlsafe_b64encode(b).decode().rstrip("=")),
        st.text(st.characters(codec="utf-8"), max_size=40),
    )
    if route in QUERIES:  # the body carries any JSON value
        return st.one_of(strings, st.none(), st.integers(), st.lists(st.integers(), max_size=2))
    return strings


@pytest.mark.parametrize("route", ROUTES)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_cursor_gives_b_nothing_of_a_and_never_500(
    client: TestClient[Any], app_container: Container, cursors: Cursors, route: str, data: st.DataObject
) -> None:
    cursor = data.draw(_cursor_strategy(cursors, route), label="cursor")
    _assert_nothing_of_a(app_container, cursors, route, cursor, _ask(client, route, cursor))

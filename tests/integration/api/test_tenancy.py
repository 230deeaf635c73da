"""Tenant isolation over the app's own route table, in process on real Postgres.

Tenant A owns one of everything: a product, user, order, payment and session (through the commands), a
webhook endpoint with a delivery, an alert rule, a dead letter, a legacy source declaration and a stored
API key. For every route whose path names an object, tenant B -- with an admin key, so no scope stands
in for the tenant check -- asks for A's object: it gets 404 and A's state is unchanged afterwards. A
route missing from PROBES fails ``test_every_route_that_names_an_object_is_probed``: a new route gets
its tenant check decided here. List routes answer B without any of A's objects, and no answer carries
a secret (key text, signing secret, a source's password).
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from webhook_helpers import append_order

from connectors.dead_letters import DeadLetter
from readmodels.contract_registry import REGISTRY
from services.bootstrap import Container, build
from services.config import WebhookSettings
from services.legacy_sources import LegacySources

from .conftest import A_ADMIN, B_ADMIN, KEY_ADMIN_A, KEY_ADMIN_B, KEYS, A, in_process_settings
from .shop_commands import act, ok, order, product, user

SOURCE_PASSWORD = "legacy-pw-" + uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def app_container(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    settings = in_process_settings(
        Path(tmp_path_factory.mktemp("api-tenancy")), webhooks=WebhookSettings(allow_private=True)
    )
    container = build(settings, database, KEYS)
    container.clickhouse.drop_all()
    container.clickhouse.ensure_schema()
    try:
        yield container
    finally:
        container.close()


@pytest.fixture(scope="module")
def legacy(
    client: TestClient[Any], app_container: Container, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The legacy sources' control plane (declarations in Postgres) without captures: distributed mode
    with no Kafka Connect registers nothing and starts no engine."""
    app_container.runtime.legacy = LegacySources(
        app_container.store, app_container.dead_letters, Path(tmp_path_factory.mktemp("legacy")),
        app_container.secret_box, mode="distributed", allow_private=True,  # the declarations name 127.0.0.1
    )  # fmt: skip


@pytest.fixture(scope="module")
def objs(client: TestClient[Any], app_container: Container, legacy: None) -> dict[str, Any]:
    """Tenant A's objects (ids, and the secrets A was shown once)."""
    pid, _ = product(client, A, "Isolated lamp")
    uid, _ = user(client, A, "Ada Isolated")
    oid, _ = order(client, A, uid, pid)
    pay = {"order_id": oid, "amount": "19.00", "currency": "USD", "method": "card"}
    payment = ok(client.post("/v1/payments", json=pay, headers=A), 201)["payment_id"]
    session = f"SES-{uuid.uuid4().hex[:10]}"
    ok(client.post(f"/v1/sessions/{session}/events", json={"type": "page_view", "page_url": "/"}, headers=A),
       201)  # fmt: skip
    act(client, A, f"/v1/orders/{oid}/confirm")
    hook = ok(client.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/a"}, headers=A), 201)
    ok(client.post(f"/v1/webhooks/{hook['id']}/test", headers=A), 202)
    rule = {"name": "a's spike", "metric": "order_count", "window": "5m", "condition": "above",
            "threshold": 1000, "for": "2s", "endpoint_id": hook["id"]}  # fmt: skip
    alert = ok(client.post("/v1/alerts", json=rule, headers=A), 201)
    position = append_order(app_container.store, "tenant-a", 1500, order_id=f"ORD-{uuid.uuid4().hex[:8]}")
    [event] = app_container.store.read_all(position - 1, limit=1)
    assert app_container.dead_letters.add([DeadLetter(
        "embedded", "validate", "sum of lines != total_minor", event_id=str(event.event_id),
        position=position, tenant_id="tenant-a", event_type="OrderPlaced",
        record={"event_id": str(event.event_id), "data": event.data},
    )]) == 1  # fmt: skip
    [letter] = [d for d in app_container.dead_letters.list("tenant-a", 500) if d.position == position]
    source = {
        "name": f"a_shop_{uuid.uuid4().hex[:6]}", "kind": "postgres", "tenant": "tenant-a",
        "connection": {"host": "127.0.0.1", "port": 5999, "database": "shop", "user": "u",
                       "password": SOURCE_PASSWORD},
        "tables": [{"table": "public.orders", "translator": "orders"}],
    }  # fmt: skip
    ok(client.post("/v1/admin/sources", json=source, headers=A_ADMIN), 201)
    key = ok(client.post("/v1/admin/keys", json={"name": "a's reader"}, headers=A_ADMIN), 201)
    return {
        "product": pid, "user": uid, "order": oid, "payment": payment, "session": session,
        "endpoint": hook["id"], "webhook_secret": hook["secret"], "alert": alert["id"], "letter": letter.id,
        "source": source["name"], "key": key["key"]["id"], "key_secret": key["secret"], "rule": rule,
    }  # fmt: skip


def a_state(client: TestClient[Any], app_container: Container, o: dict[str, Any]) -> dict[str, Any]:
    """Everything of A's that a request by B could change."""

    def get(path: str, headers: dict[str, str] = A) -> Any:
        return ok(client.get(path, headers=headers))

    events = app_container.store.read_all(0, limit=100_000, tenant_id="tenant-a")
    return {
        "events": [(e.position, e.stream_id, e.event_type) for e in events],
        "endpoint": get(f"/v1/webhooks/{o['endpoint']}"),
        "deliveries": [(d["id"], d["status"])
                       for d in get(f"/v1/webhooks/{o['endpoint']}/deliveries")["data"]],
        "alert": get(f"/v1/alerts/{o['alert']}"),
        "history": get(f"/v1/alerts/{o['alert']}/history"),
        "letter": get(f"/v1/deadletter/{o['letter']}"),
        "source": get(f"/v1/admin/sources/{o['source']}", A_ADMIN),
        "key": get(f"/v1/admin/keys/{o['key']}", A_ADMIN),
    }


# (method, route) -> (path with A's objects, body, what B gets): "404", "403" (the route needs the
# operator scope: no tenant can reach it) or "own" (the name is not a tenant's object: B gets its own)
PROBES: dict[tuple[str, str], tuple[str, Any, str]] = {
    ("GET", "/v1/entity/{entity_type:str}/{entity_id:str}"): ("/v1/entity/order/{order}", None, "404"),
    ("GET", "/v1/entity/{entity_type:str}/{entity_id:str}/timeline"): (
        "/v1/entity/order/{order}/timeline", None, "404"),
    ("GET", "/v1/lineage/{entity_type:str}/{entity_id:str}"): ("/v1/lineage/order/{order}", None, "404"),
    ("GET", "/v1/metrics/{metric_name:str}"): ("/v1/metrics/order_count?window=1h", None, "own"),
    ("GET", "/v1/metrics/{metric_name:str}/series"): (
        "/v1/metrics/order_count/series?window=1h", None, "own"),
    ("GET", "/v1/contracts/{name:str}"): ("/v1/contracts/order", None, "own"),
    ("GET", "/v1/contracts/{name:str}/{version:str}"): ("/v1/contracts/order/1.0.0", None, "own"),
    ("GET", "/v1/contracts/{name:str}/diff/{from_version:str}/{to_version:str}"): (
        "/v1/contracts/order/diff/1.0.0/1.1.0", None, "own"),
    ("POST", "/v1/contracts/{name:str}/validate"): ("/v1/contracts/revenue/validate", "contract", "own"),
    ("POST", "/v1/orders/{order_id:str}/confirm"): ("/v1/orders/{order}/confirm", {}, "404"),
    ("POST", "/v1/orders/{order_id:str}/cancel"): ("/v1/orders/{order}/cancel", {"reason": "b"}, "404"),
    ("POST", "/v1/orders/{order_id:str}/ship"): ("/v1/orders/{order}/ship", {}, "404"),
    ("POST", "/v1/orders/{order_id:str}/deliver"): ("/v1/orders/{order}/deliver", {}, "404"),
    ("POST", "/v1/orders/{order_id:str}/refund"): ("/v1/orders/{order}/refund", {"amount": "1.00"}, "404"),
    ("POST", "/v1/payments/{payment_id:str}/complete"): ("/v1/payments/{payment}/complete", {}, "404"),
    ("POST", "/v1/payments/{payment_id:str}/fail"): ("/v1/payments/{payment}/fail", {"reason": "b"}, "404"),
    ("POST", "/v1/payments/{payment_id:str}/refund"): (
        "/v1/payments/{payment}/refund", {"amount": "1.00"}, "404"),
    ("POST", "/v1/products/{product_id:str}/restock"): (
        "/v1/products/{product}/restock", {"quantity": 1}, "404"),
    ("POST", "/v1/products/{product_id:str}/adjust"): (
        "/v1/products/{product}/adjust", {"delta": -1, "reason": "damage"}, "404"),
    ("POST", "/v1/products/{product_id:str}/price"): (
        "/v1/products/{product}/price", {"price": "1.00"}, "404"),
    ("POST", "/v1/products/{product_id:str}/reserve"): (
        "/v1/products/{product}/reserve", {"order_id": "{order}", "quantity": 1}, "404"),
    ("POST", "/v1/products/{product_id:str}/release"): (
        "/v1/products/{product}/release", {"order_id": "{order}", "quantity": 1}, "404"),
    # a session id names B's own session (its first event creates it); A's is not touched
    ("POST", "/v1/sessions/{session_id:str}/events"): (
        "/v1/sessions/{session}/events", {"type": "page_view", "page_url": "/b"}, "own"),
    ("GET", "/v1/webhooks/{endpoint_id:str}"): ("/v1/webhooks/{endpoint}", None, "404"),
    ("PATCH", "/v1/webhooks/{endpoint_id:str}"): ("/v1/webhooks/{endpoint}", {"enabled": False}, "404"),
    ("DELETE", "/v1/webhooks/{endpoint_id:str}"): ("/v1/webhooks/{endpoint}", None, "404"),
    ("GET", "/v1/webhooks/{endpoint_id:str}/deliveries"): ("/v1/webhooks/{endpoint}/deliveries", None, "404"),
    ("POST", "/v1/webhooks/{endpoint_id:str}/test"): ("/v1/webhooks/{endpoint}/test", None, "404"),
    ("POST", "/v1/webhooks/{endpoint_id:str}/replay"): ("/v1/webhooks/{endpoint}/replay", {}, "404"),
    ("POST", "/v1/webhooks/{endpoint_id:str}/rotate-secret"): (
        "/v1/webhooks/{endpoint}/rotate-secret", None, "404"),
    ("GET", "/v1/alerts/{alert_id:str}"): ("/v1/alerts/{alert}", None, "404"),
    ("PATCH", "/v1/alerts/{alert_id:str}"): ("/v1/alerts/{alert}", {"threshold": 5}, "404"),
    ("PUT", "/v1/alerts/{alert_id:str}"): ("/v1/alerts/{alert}", "rule", "404"),
    ("DELETE", "/v1/alerts/{alert_id:str}"): ("/v1/alerts/{alert}", None, "404"),
    ("GET", "/v1/alerts/{alert_id:str}/history"): ("/v1/alerts/{alert}/history", None, "404"),
    ("POST", "/v1/alerts/{alert_id:str}/test"): ("/v1/alerts/{alert}/test", None, "404"),
    ("GET", "/v1/deadletter/{letter_id:str}"): ("/v1/deadletter/{letter}", None, "404"),
    ("POST", "/v1/deadletter/{letter_id:str}/replay"): ("/v1/deadletter/{letter}/replay", {}, "404"),
    ("POST", "/v1/deadletter/{letter_id:str}/dismiss"): ("/v1/deadletter/{letter}/dismiss", {}, "404"),
    ("GET", "/v1/admin/sources/{name:str}"): ("/v1/admin/sources/{source}", None, "404"),
    ("DELETE", "/v1/admin/sources/{name:str}"): ("/v1/admin/sources/{source}", None, "404"),
    ("GET", "/v1/admin/keys/{key_id:str}"): ("/v1/admin/keys/{key}", None, "404"),
    ("POST", "/v1/admin/keys/{key_id:str}/rotate"): ("/v1/admin/keys/{key}/rotate", {}, "404"),
    ("DELETE", "/v1/admin/keys/{key_id:str}"): ("/v1/admin/keys/{key}", None, "404"),
    # a read model is every tenant's: rebuilding it is an operator's (tests/integration/api/test_admin.py)
    ("GET", "/v1/admin/projections/{name:str}/rebuild"): ("/v1/admin/projections/clickhouse/rebuild", None,
                                                          "403"),
    ("POST", "/v1/admin/projections/{name:str}/rebuild"): ("/v1/admin/projections/clickhouse/rebuild", None,
                                                           "403"),
}  # fmt: skip


def _named_routes(client: TestClient[Any]) -> set[tuple[str, str]]:
    out = set()
    for route in client.app.routes:
        for handler in getattr(route, "route_handlers", ()):
            for method in handler.http_methods:
                if method != "OPTIONS" and "{" in route.path and not route.path.startswith("/schema"):
                    out.add((method, route.path))
    return out


def test_every_route_that_names_an_object_is_probed(client: TestClient[Any]) -> None:
    routes = _named_routes(client)
    assert not routes - set(PROBES), f"decide these routes' tenant check in PROBES: {routes - set(PROBES)}"
    assert not set(PROBES) - routes, f"no such routes any more: {set(PROBES) - routes}"


def _fill(value: Any, o: dict[str, Any]) -> Any:
    if value == "rule":
        return o["rule"]
    if value == "contract":
        return copy.deepcopy(REGISTRY.current("revenue").doc)
    if isinstance(value, str):
        return value.format(**{k: v for k, v in o.items() if isinstance(v, str | int)})
    if isinstance(value, dict):
        return {k: _fill(v, o) for k, v in value.items()}
    return value


@pytest.mark.parametrize(("method", "route"), sorted(PROBES), ids=[f"{m} {r}" for m, r in sorted(PROBES)])
def test_tenant_b_gets_404_and_a_is_unchanged(
    client: TestClient[Any], app_container: Container, objs: dict[str, Any], method: str, route: str
) -> None:
    path, body, expect = PROBES[(method, route)]
    path, body = _fill(path, objs), _fill(body, objs)
    before = a_state(client, app_container, objs)
    kwargs: dict[str, Any] = {"json": body} if body is not None else {}
    r = client.request(method, path, headers=B_ADMIN, **kwargs)
    if expect == "404":
        assert r.status_code == 404, (method, path, r.status_code, r.text)
        assert r.json()["error"]["code"] in ("not_found", "entity_not_found"), r.text
    elif expect == "403":
        assert r.status_code == 403, (method, path, r.status_code, r.text)
    else:
        assert r.status_code in (200, 201), (method, path, r.status_code, r.text)
        if route.startswith("/v1/metrics/"):  # B never ordered: its count is its own (0), not A's
            doc = r.json()
            values = [doc["value"]] if "value" in doc else [p["value"] for p in doc["points"]]
            assert not any(values), doc
        elif method == "GET":  # a global name (contracts): the same answer for every tenant
            assert r.json() == ok(client.request(method, path, headers=A))
    for text in (objs["key_secret"], objs["webhook_secret"], SOURCE_PASSWORD, KEY_ADMIN_A, KEY_ADMIN_B):
        assert text not in r.text
    assert a_state(client, app_container, objs) == before


LIST_QUERIES = {"/v1/search": {"q": "Isolated"}}
# an SSE stream never ends: its tenant filter is tests/integration/api/test_stream.py's
NOT_LISTED = {"/v1/stream/events"}


def _list_routes(client: TestClient[Any]) -> list[str]:
    out = set()
    for route in client.app.routes:
        for handler in getattr(route, "route_handlers", ()):
            scope = handler.opt.get("scope")
            if "GET" in handler.http_methods and "{" not in route.path and scope not in (None, "public"):
                out.add(route.path)
    return sorted(out - NOT_LISTED)


LIST_ROUTES = [
    "/v1/admin/keys", "/v1/admin/sources", "/v1/alerts", "/v1/catalog", "/v1/changelog", "/v1/contracts",
    "/v1/deadletter", "/v1/deadletter/stats", "/v1/search", "/v1/slo", "/v1/webhooks", "/v1/whoami",
]  # fmt: skip


def test_the_list_routes_are_all_covered(client: TestClient[Any]) -> None:
    assert _list_routes(client) == LIST_ROUTES


@pytest.mark.parametrize("path", LIST_ROUTES)
def test_lists_answer_b_without_a_objects_or_secrets(
    client: TestClient[Any], objs: dict[str, Any], path: str
) -> None:
    mine = ok(client.get(path, params=LIST_QUERIES.get(path), headers=A_ADMIN))
    theirs = client.get(path, params=LIST_QUERIES.get(path), headers=B_ADMIN)
    assert theirs.status_code == 200, theirs.text
    # (not the session id: B may hold a session of that id of its own, made by the sessions probe)
    names = ("product", "user", "order", "payment", "endpoint", "alert", "source", "key")
    a_ids = [objs[k] for k in names]
    assert not [i for i in a_ids if str(i) in theirs.text], theirs.text
    for answer in (theirs.text, str(mine)):
        for text in (objs["key_secret"], objs["webhook_secret"], SOURCE_PASSWORD, KEY_ADMIN_A, KEY_ADMIN_B):
            assert text not in answer, path


def test_b_cannot_declare_a_source_for_a_or_take_its_name(
    client: TestClient[Any], objs: dict[str, Any]
) -> None:
    source = {
        "name": f"b_shop_{uuid.uuid4().hex[:6]}", "kind": "postgres", "tenant": "tenant-a",
        "connection": {"host": "127.0.0.1", "port": 5999, "database": "shop", "user": "u", "password": "p"},
        "tables": [{"table": "public.orders", "translator": "orders"}],
    }  # fmt: skip
    r = client.post("/v1/admin/sources", json=source, headers=B_ADMIN)
    assert r.status_code == 403 and r.json()["error"]["code"] == "cross_tenant", r.text
    mapped = {k: v for k, v in source.items() if k != "tenant"}
    mapped.update(tenant_column="shop", tenants={"1": "tenant-b", "2": "tenant-a"})
    assert client.post("/v1/admin/sources", json=mapped, headers=B_ADMIN).status_code == 403
    taken = {**source, "name": objs["source"], "tenant": "tenant-b"}
    for replace in ("false", "true"):
        r = client.post("/v1/admin/sources", json=taken, params={"replace": replace}, headers=B_ADMIN)
        assert r.status_code == 409 and r.json()["error"]["code"] == "source_exists", r.text
    mine = ok(client.get(f"/v1/admin/sources/{objs['source']}", headers=A_ADMIN))
    assert mine["tenant"] == "tenant-a" and SOURCE_PASSWORD not in str(mine)
    assert client.get("/v1/admin/sources", headers=B_ADMIN).json() == {"sources": []}

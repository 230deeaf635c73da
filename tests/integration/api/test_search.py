"""GET /v1/search in process: entities of the caller's tenant (indexed on its first search, then kept
current by applied events), metrics and catalog fields; validation, freshness and tenant isolation."""

from __future__ import annotations

import uuid
from typing import Any

from litestar.testing import TestClient

from .conftest import A, B
from .shop_commands import act, ok, order, product, user


def _search(c: TestClient[Any], h: dict[str, str], **params: Any) -> dict[str, Any]:
    return ok(c.get("/v1/search", params=params, headers=h))


def test_search_finds_the_tenants_entities_as_their_events_apply(client: TestClient[Any]) -> None:
    word = "zq" + uuid.uuid4().hex[:8]
    pid, pos = product(client, A, f"Quantum {word} Lamp", category="lighting")
    body = _search(client, A, q=word, min_position=pos)
    assert body["query"] == word
    assert body["results"][0] == {
        "type": "entity",
        "id": pid,
        "entity_type": "product",
        "score": 1.0,
        "snippet": f"Product Quantum {word} Lamp ({pid}), category lighting",
        "endpoint": f"/v1/entity/product/{pid}",
    }
    meta = body["meta"]
    assert meta["as_of_position"] >= pos and meta["freshness_seconds"] >= 0 and "stale" not in meta
    assert meta["indexed"]["entities"] >= 1 and meta["indexed"]["metrics_and_fields"] > 0
    # another tenant never sees it
    assert all(r["id"] != pid for r in _search(client, B, q=word)["results"])
    # the tenant is indexed now: new entities and changes arrive through applied events
    email = f"{word}@example.com"
    uid, _ = user(client, A, f"Ada {word}", email)
    oid, opos = order(client, A, uid, pid)
    found = _search(client, A, q=email, min_position=opos, limit=5)["results"]
    assert found[0]["id"] == uid and found[0]["entity_type"] == "user"
    orders = _search(client, A, q=uid, entity_types="order", min_position=opos)["results"]
    assert [r["id"] for r in orders] == [oid]
    cancelled = act(client, A, f"/v1/orders/{oid}/cancel", {"reason": "test"})
    hits = _search(client, A, q=f"{oid} cancelled", min_position=cancelled)["results"]
    assert hits[0]["id"] == oid and "cancelled" in hits[0]["snippet"]
    # word prefixes match; entity_types may repeat and list several
    assert any(r["id"] == pid for r in _search(client, A, q="quantu")["results"])
    both = client.get(
        "/v1/search",
        params=[("q", f"{word} {pid}"), ("entity_types", "order"), ("entity_types", "product,user")],
        headers=A,
    )
    assert {r["entity_type"] for r in ok(both)["results"]} == {"order", "product", "user"}


def test_metrics_and_catalog_fields_come_from_the_contracts(client: TestClient[Any]) -> None:
    metrics = _search(client, B, q="refund rate")["results"]
    assert metrics[0]["type"] == "metric" and metrics[0]["id"] == "refund_rate"
    assert metrics[0]["endpoint"] == "/v1/metrics/refund_rate" and metrics[0]["entity_type"] is None
    fields = _search(client, B, q="preferred category", entity_types="user")["results"]
    assert fields[0] == {
        **fields[0],
        "type": "catalog_field",
        "id": "user.preferred_category",
        "endpoint": "/v1/catalog",
    }
    assert all(r["type"] != "metric" for r in fields)
    assert len(_search(client, B, q="order", limit=3)["results"]) == 3


def test_malformed_searches_are_422_and_a_key_is_required(client: TestClient[Any]) -> None:
    for params in ({"q": "x"}, {"q": " a "}, {}, {"q": "y" * 257}):
        r = client.get("/v1/search", params=params, headers=A)
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_query", params
    r = client.get("/v1/search", params={"q": "ok", "entity_types": "planet"}, headers=A)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_entity_types"
    assert r.json()["error"]["details"]["available"] == ["order", "user", "product", "session"]
    for limit in (0, 51, "many"):
        r = client.get("/v1/search", params={"q": "ok", "limit": limit}, headers=A)
        assert r.status_code == 422 and r.json()["detail"], limit
    assert client.get("/v1/search", params={"q": "ok"}).status_code == 401
    assert client.get("/v1/search", params={"q": "ok"}, headers={"X-API-Key": "nope"}).status_code == 401


def test_min_position_not_applied_is_503_or_a_stale_answer(client: TestClient[Any]) -> None:
    far = 10**12
    r = client.get("/v1/search", params={"q": "revenue", "min_position": far, "timeout_ms": 0}, headers=A)
    assert r.status_code == 503 and r.headers["Retry-After"] == "1"
    assert r.json()["error"]["code"] == "position_not_yet_applied"
    assert r.json()["error"]["details"]["min_position"] == far
    stale = _search(client, A, q="revenue", min_position=far, timeout_ms=0, allow_stale="true")
    assert stale["meta"]["stale"] is True and "revenue" in {r["id"] for r in stale["results"]}
    r = client.get("/v1/search", params={"q": "revenue", "min_position": "soon"}, headers=A)
    assert r.status_code == 422

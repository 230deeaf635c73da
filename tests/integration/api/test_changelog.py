"""GET /v1/changelog in process: the caller's applied events newest first, cursor pages, filters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from litestar.testing import TestClient

from .conftest import A, B
from .shop_commands import act, ok, order, product, user


def _page(c: TestClient[Any], h: dict[str, str], **params: Any) -> dict[str, Any]:
    return ok(c.get("/v1/changelog", params=params, headers=h))


def test_changelog_pages_newest_first_through_every_change_once(client: TestClient[Any]) -> None:
    pid, _ = product(client, A, "Changeling")
    uid, _ = user(client, A, "Change Log")
    oid, placed = order(client, A, uid, pid)
    confirmed = act(client, A, f"/v1/orders/{oid}/confirm")
    first = _page(client, A, limit=2, min_position=confirmed)
    assert first["latest_version"] == str(first["meta"]["as_of_position"])
    assert first["meta"]["as_of_position"] >= confirmed and first["page_size"] == 2
    positions = [c["position"] for c in first["changes"]]
    assert positions == sorted(positions, reverse=True) and positions[0] >= confirmed
    assert first["has_more"] is True and first["next_cursor"] == str(positions[-1])
    assert first["versions"][0]["status"] == "latest" and first["versions"][0]["changes"]
    # every page after the cursor, until the end: each applied change of the tenant once, in order
    seen = list(positions)
    page = first
    while page["has_more"]:
        page = _page(client, A, limit=2, cursor=page["next_cursor"])
        seen += [c["position"] for c in page["changes"]]
    assert page["next_cursor"] is None and seen == sorted(set(seen), reverse=True)
    everything = _page(client, A, limit=500)
    assert [c["position"] for c in everything["changes"]] == seen
    # one entity: exactly its events, newest first, with their summaries
    mine = _page(client, A, entity_type="order", entity_id=oid)
    assert [c["event_type"] for c in mine["changes"]] == ["OrderConfirmed", "OrderPlaced"]
    newest = mine["changes"][0]
    assert newest["position"] == confirmed and mine["changes"][1]["position"] <= placed
    assert newest["summary"] == f"order {oid}: OrderConfirmed (position {confirmed})"
    assert newest["entity_type"] == "order" and newest["entity_id"] == oid and newest["stream_version"] == 2
    assert newest["data"]["order_id"] == oid and newest["event_id"] and newest["recorded_at"].endswith("Z")
    assert mine["has_more"] is False and mine["next_cursor"] is None
    # versions: the page's changes grouped by the day they occurred, the newest day "latest"
    days: list[dict[str, Any]] = []
    for c in mine["changes"]:
        day = datetime.fromisoformat(c["occurred_at"].replace("Z", "+00:00")).date().isoformat()
        if not days or days[-1]["date"] != day:
            days.append({"date": day, "status": "previous" if days else "latest", "changes": []})
        days[-1]["changes"].append(c["summary"])
    assert mine["versions"] == days


def test_changelog_filters_by_event_type_and_time(client: TestClient[Any]) -> None:
    pid, _ = product(client, A, "Filtered")
    uid, _ = user(client, A, "Fil Ter")
    _, placed = order(client, A, uid, pid)
    only = _page(client, A, event_type="OrderPlaced", limit=5, min_position=placed)
    assert only["changes"] and {c["event_type"] for c in only["changes"]} == {"OrderPlaced"}
    two = _page(client, A, event_type="OrderPlaced, UserRegistered", limit=50)
    assert {c["event_type"] for c in two["changes"]} == {"OrderPlaced", "UserRegistered"}
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert _page(client, A, since=future)["changes"] == []
    assert _page(client, A, since="2000-01-01T00:00:00")["changes"]  # a naive time is UTC


def test_changelog_is_tenant_scoped(client: TestClient[Any]) -> None:
    pid, pos = product(client, A, "Mine")
    assert _page(client, A, entity_id=pid, min_position=pos)["changes"]
    assert _page(client, B, entity_id=pid)["changes"] == []
    bpid, bpos = product(client, B, "Theirs")
    theirs = _page(client, B, limit=500, min_position=bpos)["changes"]
    assert {c["entity_id"] for c in theirs} == {bpid}


def test_malformed_changelog_requests_are_422(client: TestClient[Any]) -> None:
    cases = [
        ({"cursor": "abc"}, "invalid_cursor"),
        ({"event_type": "Nope"}, "invalid_event_type"),
        ({"entity_type": "planet"}, "invalid_entity_type"),
        ({"since": "yesterday"}, "invalid_since"),
        ({"limit": 0}, "validation_failed"),
        ({"limit": 501}, "validation_failed"),
    ]
    for params, code in cases:
        r = client.get("/v1/changelog", params=params, headers=A)
        assert r.status_code == 422 and r.json()["error"]["code"] == code, (params, r.text)
    assert client.get("/v1/changelog").status_code == 401
    stale = _page(client, A, min_position=10**12, timeout_ms=0, allow_stale="true")
    assert stale["meta"]["stale"] is True

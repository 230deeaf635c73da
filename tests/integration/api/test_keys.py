"""API keys over HTTP, in process, on real Postgres: ``/v1/admin/keys`` (the secret shown once, hashed at
rest), scopes (a read key runs no command, a write key reaches no admin route, admin is deny-by-default),
rotation with its grace period (kept, then ended, by a second API process on the same database too),
revocation seen by that second process within a second, and a property: any X-API-Key string is 401 or
a valid tenant's key, never a 500."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient
from sqlalchemy import text
from waiting import eventually

from services.api.app import create_app
from services.bootstrap import Container, build

from .conftest import A_ADMIN, B_ADMIN, KEY_A, KEY_B, KEYS, OPS, A, B

KEY_FIELDS = {"id", "tenant_id", "name", "prefix", "scopes", "status", "created_at", "created_by",
              "expires_at", "revoked_at", "rotated_to"}  # fmt: skip
ADMIN_ROUTES = [
    ("GET", "/v1/admin/keys"), ("POST", "/v1/admin/keys"), ("GET", "/v1/admin/sources"),
    ("POST", "/v1/admin/replay/kafka"), ("POST", "/v1/admin/projections/clickhouse/rebuild"),
]  # fmt: skip


def issue(client: TestClient[Any], headers: dict[str, str], **body: Any) -> dict[str, Any]:
    r = client.post("/v1/admin/keys", json={"name": "test key", **body}, headers=headers)
    assert r.status_code == 201, r.text
    doc: dict[str, Any] = r.json()
    return doc


def key(doc: dict[str, Any]) -> dict[str, str]:
    return {"X-API-Key": doc["secret"]}


@pytest.fixture(scope="module")
def second_container(
    app_container: Container, database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Container]:
    """A second API process on the same database (its own engine, key cache and app; its runtime is not
    started), configured with AGENTFLOW_API_KEYS A and B only: no key of the environment has admin."""
    settings = dataclasses.replace(
        app_container.settings, data_dir=Path(tmp_path_factory.mktemp("second")), admin_api_keys=frozenset(),
        operator_api_keys=frozenset(),
    )  # fmt: skip
    other = build(settings, database, {KEY_A: "tenant-a", KEY_B: "tenant-b"})
    try:
        yield other
    finally:
        other.close()


@pytest.fixture(scope="module")
def second(second_container: Container) -> Iterator[TestClient[Any]]:
    """The second process's app."""
    with TestClient(create_app(second_container, manage_runtime=False), timeout=60) as c:
        yield c


def test_create_list_get_and_the_secret_is_shown_once(
    client: TestClient[Any], app_container: Container
) -> None:
    made = issue(client, A_ADMIN, name="dashboard", scopes=["read", "write"])
    doc, secret = made["key"], made["secret"]
    assert set(doc) == KEY_FIELDS and doc["tenant_id"] == "tenant-a" and doc["scopes"] == ["read", "write"]
    assert doc["status"] == "active" and doc["created_by"] == "env:tenant-a" and doc["expires_at"] is None
    assert secret.startswith(doc["prefix"]) and len(secret) > 50
    assert client.get("/v1/catalog", headers=key(made)).status_code == 200
    listed = client.get("/v1/admin/keys", headers=A_ADMIN)
    assert listed.status_code == 200 and doc["id"] in [k["id"] for k in listed.json()["keys"]]
    got = client.get(f"/v1/admin/keys/{doc['id']}", headers=A_ADMIN)
    assert got.json() == doc
    for answer in (listed.text, got.text):
        assert secret not in answer and secret[len(doc["prefix"]):] not in answer and "argon2" not in answer
    with app_container.engine.connect() as conn:  # at rest: an argon2id hash, never the key
        query = text("SELECT secret_hash FROM api_keys WHERE id = :i")
        stored = conn.execute(query, {"i": doc["id"]}).scalar()
    assert str(stored).startswith("$argon2id$") and secret not in str(stored)
    # B's admin does not see A's keys; the operator sees every tenant's
    assert doc["id"] not in client.get("/v1/admin/keys", headers=B_ADMIN).text
    assert doc["id"] in client.get("/v1/admin/keys", headers=OPS).text
    only_a = client.get("/v1/admin/keys", params={"tenant_id": "tenant-a"}, headers=OPS).json()["keys"]
    assert {k["tenant_id"] for k in only_a} == {"tenant-a"}
    assert client.get("/v1/admin/keys", params={"tenant_id": "tenant-a"}, headers=B_ADMIN).status_code == 403


def test_create_refusals(client: TestClient[Any]) -> None:
    for body, status, code in (
        ({"scopes": ["read"], "tenant_id": "tenant-b"}, 403, "cross_tenant"),
        ({"tenant_id": {}}, 422, "validation_failed"),
        ({"scopes": ["operator"]}, 403, "insufficient_scope"),
        ({"scopes": ["root"]}, 422, None),
        ({"scopes": []}, 422, "invalid_key_request"),
        ({"name": ""}, 422, "invalid_key_request"),
        ({"expires_in_seconds": -5}, 422, "invalid_key_request"),
        ({"expires_at": "2000-01-01T00:00:00Z"}, 422, "invalid_key_request"),
    ):
        r = client.post("/v1/admin/keys", json={"name": "x", **body}, headers=A_ADMIN)
        assert r.status_code == status, (body, r.text)
        if code:
            assert r.json()["error"]["code"] == code, r.text
    # an operator hands out keys of any tenant, operator keys included
    ops = issue(client, OPS, tenant_id="tenant-b", scopes=["read", "admin", "operator"])
    assert ops["key"]["tenant_id"] == "tenant-b"
    assert client.get("/v1/admin/keys", headers=key(ops)).status_code == 200


def test_a_read_key_runs_no_command_and_a_write_key_reaches_no_admin_route(client: TestClient[Any]) -> None:
    reader = key(issue(client, A_ADMIN, scopes=["read"]))
    writer = key(issue(client, A_ADMIN, scopes=["read", "write"]))
    assert client.get("/v1/metrics/order_count", params={"window": "1h"}, headers=reader).status_code == 200
    for method, path, body in (
        ("POST", "/v1/products", {"name": "x", "category": "y", "price": "1", "currency": "USD"}),
        ("POST", "/v1/orders/ORD-1/confirm", {}),
        ("POST", "/v1/webhooks", {"url": "http://127.0.0.1:9/x"}),
        ("POST", "/v1/alerts", {}),
        ("POST", "/v1/deadletter/1/dismiss", {}),
    ):
        r = client.request(method, path, json=body, headers=reader)
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", (path, r.text)
        assert r.json()["error"]["details"]["required_scope"] == "write"
    made = client.post("/v1/products", json={"name": "x", "category": "y", "price": "1", "currency": "USD"},
                       headers=writer)  # fmt: skip
    assert made.status_code == 201, made.text
    for headers in (writer, A, B):
        for method, path in ADMIN_ROUTES:
            r = client.request(method, path, json={} if method == "POST" else None, headers=headers)
            assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", (path, r.text)


def test_admin_is_deny_by_default(second: TestClient[Any]) -> None:
    """No key of the second process's environment has admin: every admin route refuses every key."""
    for headers in (A, B):
        assert second.get("/v1/catalog", headers=headers).status_code == 200
        for method, path in ADMIN_ROUTES:
            r = second.request(method, path, json={} if method == "POST" else None, headers=headers)
            assert r.status_code == 403 and r.json()["error"]["details"]["required_scope"] in (
                "admin", "operator"), (path, r.text)  # fmt: skip


def test_rotation_keeps_the_old_key_for_its_grace_period(
    client: TestClient[Any], second: TestClient[Any], app_container: Container
) -> None:
    old = issue(client, A_ADMIN, name="svc", scopes=["read"])
    assert second.get("/v1/catalog", headers=key(old)).status_code == 200
    r = client.post(f"/v1/admin/keys/{old['key']['id']}/rotate", json={"grace_seconds": 600}, headers=A_ADMIN)
    assert r.status_code == 201, r.text
    new = r.json()
    assert new["key"]["id"] != old["key"]["id"] and new["secret"] != old["secret"]
    assert new["key"]["scopes"] == ["read"] and new["key"]["name"] == "svc"
    assert new["previous"]["rotated_to"] == new["key"]["id"] and new["previous"]["expires_at"] is not None
    for c in (client, second):  # during the grace period both keys work, on every process
        assert c.get("/v1/catalog", headers=key(old)).status_code == 200
        assert c.get("/v1/catalog", headers=key(new)).status_code == 200
    again = client.post(f"/v1/admin/keys/{old['key']['id']}/rotate", headers=A_ADMIN)
    assert again.status_code == 409 and again.json()["error"]["code"] == "key_rotated"
    # past the grace period (the first process's clock moved 601 s on): the old key is refused
    auth = app_container.authenticator
    real_clock = auth.clock
    auth.clock = lambda: real_clock() + 601
    try:
        auth.forget()
        assert client.get("/v1/catalog", headers=key(old)).status_code == 401
        assert client.get("/v1/catalog", headers=key(new)).status_code == 200
    finally:
        auth.clock = real_clock
        auth.forget()
    # grace 0: the old key ends now
    path = f"/v1/admin/keys/{new['key']['id']}/rotate"
    ended = client.post(path, json={"grace_seconds": 0}, headers=A_ADMIN)
    assert ended.status_code == 201
    eventually(lambda: second.get("/v1/catalog", headers=key(new)).status_code == 401, 10,
               what="the rotated-out key is refused")  # fmt: skip
    assert second.get("/v1/catalog", headers=key(ended.json())).status_code == 200


def test_the_other_process_refuses_a_rotated_key_once_its_grace_period_ends(
    client: TestClient[Any], second: TestClient[Any], second_container: Container
) -> None:
    """Rotated on the first process; the second, which had verified the old key before, is not told: it
    keeps the old key for the grace period and refuses it once its own clock is past the end of it."""
    old = issue(client, A_ADMIN, name="svc elsewhere", scopes=["read"])
    assert second.get("/v1/catalog", headers=key(old)).status_code == 200  # verified and cached there
    r = client.post(f"/v1/admin/keys/{old['key']['id']}/rotate", json={"grace_seconds": 600}, headers=A_ADMIN)
    assert r.status_code == 201, r.text
    new = r.json()
    for headers in (key(old), key(new)):  # the grace period: both keys, on the other process
        assert second.get("/v1/catalog", headers=headers).status_code == 200
    auth = second_container.authenticator
    real_clock = auth.clock
    auth.clock = lambda: real_clock() + 601  # the second process's clock only: past the grace period
    try:
        eventually(lambda: second.get("/v1/catalog", headers=key(old)).status_code == 401, 10,
                   what="the second process refuses the old key after its grace period")  # fmt: skip
        assert second.get("/v1/catalog", headers=key(new)).status_code == 200
        refused = second.get("/v1/catalog", headers=key(old))
        assert refused.json()["error"]["code"] == "unauthorized"
        # the first process's clock is still within the grace period: the refusal is the grace's end
        assert client.get("/v1/catalog", headers=key(old)).status_code == 200
    finally:
        auth.clock = real_clock
        auth.forget()


def test_a_revocation_reaches_another_process_within_a_second(
    client: TestClient[Any], second: TestClient[Any]
) -> None:
    made = issue(client, A_ADMIN, name="revoked soon", scopes=["read", "write"])
    assert second.get("/v1/catalog", headers=key(made)).status_code == 200  # verified and cached there
    assert second.get("/v1/catalog", headers=key(made)).status_code == 200
    r = client.delete(f"/v1/admin/keys/{made['key']['id']}", headers=A_ADMIN)
    revoked_at = time.monotonic()
    assert r.status_code == 200 and r.json()["status"] == "revoked" and r.json()["revoked_at"]
    assert client.get("/v1/catalog", headers=key(made)).status_code == 401  # the revoking process: at once
    last_ok: list[float] = []

    def refused() -> bool:
        started = time.monotonic()  # when the request began: a slow answer does not count against the TTL
        status = second.get("/v1/catalog", headers=key(made)).status_code
        if status == 200:
            last_ok.append(started)
        return status == 401

    eventually(refused, 10, interval=0.02, what="the second process refuses the revoked key")
    # the last request the second process still let through started within the cache's TTL (1 s)
    assert not last_ok or last_ok[-1] - revoked_at < 1.0 + 0.25, last_ok[-1] - revoked_at
    listed = client.get(f"/v1/admin/keys/{made['key']['id']}", headers=A_ADMIN).json()
    assert listed["status"] == "revoked"
    assert client.post(f"/v1/admin/keys/{made['key']['id']}/rotate", headers=A_ADMIN).status_code == 409
    # B cannot revoke A's key; an admin cannot revoke an operator's key of its tenant
    other = issue(client, A_ADMIN, scopes=["read"])
    assert client.delete(f"/v1/admin/keys/{other['key']['id']}", headers=B_ADMIN).status_code == 404
    ops_in_a = issue(client, OPS, tenant_id="tenant-a", scopes=["operator"])
    r = client.delete(f"/v1/admin/keys/{ops_in_a['key']['id']}", headers=A_ADMIN)
    assert r.status_code == 403 and r.json()["error"]["code"] == "insufficient_scope"
    assert client.get("/v1/catalog", headers=key(other)).status_code == 200


@pytest.fixture(scope="module")
def stored(client: TestClient[Any]) -> dict[str, Any]:
    return issue(client, A_ADMIN, name="property", scopes=["read"])


LATIN1 = st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_api_key_is_401_or_a_valid_tenant_never_500(
    client: TestClient[Any], stored: dict[str, Any], data: st.DataObject
) -> None:
    secret = stored["secret"]
    prefix = stored["key"]["prefix"]
    candidate = data.draw(st.one_of(
        st.text(LATIN1, max_size=300),
        st.from_regex(r"af_[0-9a-f]{12}_[A-Za-z0-9_-]{32,60}", fullmatch=True),
        st.text(st.sampled_from("abcdefABCDEF0123456789_-"), min_size=32, max_size=60).map(
            lambda s: prefix + s),
        st.sampled_from([secret, KEY_A, KEY_B, secret + "x", secret[:-1], KEY_A + " "]),
    ))  # fmt: skip
    # as bytes: the header reaches the app exactly as drawn (latin-1, as HTTP carries it)
    r = client.get("/v1/catalog", headers={"X-API-Key": candidate.encode("latin-1")})  # type: ignore[dict-item]
    assert r.status_code in (200, 401), (candidate, r.status_code, r.text)
    tenants = {secret: "tenant-a", **KEYS}
    if r.status_code == 200:
        assert candidate in tenants, candidate
    else:
        assert r.json()["error"]["code"] == "unauthorized", r.text
        assert len(candidate) < 16 or candidate not in r.text


def test_whoami_tells_a_key_its_tenant_and_scopes(client: TestClient[Any]) -> None:
    env = client.get("/v1/whoami", headers=A)
    assert env.status_code == 200, env.text
    assert env.json() == {"tenant": "tenant-a", "scopes": ["read", "write"], "grants": ["read", "write"],
                          "key_id": None, "name": "env", "expires_at": None}  # fmt: skip
    reader = issue(client, A_ADMIN, scopes=["read"])
    mine = client.get("/v1/whoami", headers=key(reader)).json()
    assert (mine["tenant"], mine["scopes"], mine["key_id"]) == ("tenant-a", ["read"], reader["key"]["id"])
    assert reader["secret"] not in str(mine)
    assert client.get("/v1/whoami").status_code == 401

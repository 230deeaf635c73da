"""Secrets over HTTP, in process: a webhook's signing secret is in the answer that creates (or rotates) it
and in no other answer -- reads, lists, updates, test deliveries, delivery logs, errors -- nor in any
log line; a legacy source's password is in no answer at all (the admin source routes over a
LegacySources without captures: distributed mode with no Kafka Connect). ``POST
/v1/admin/secrets/rotate`` re-encrypts every stored secret with the newest key."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from connectors.secret_box import SecretBox, key_id, key_id_of
from connectors.webhook_store import WebhookStore
from services.bootstrap import Container, build
from services.config import WebhookSettings
from services.legacy_sources import LegacySources
from services.secrets_cli import report_rotation

from .conftest import KEY_A, KEYS, A, B, in_process_settings

URL = "http://127.0.0.1:9/hook"  # never called: no fleet runs in this process
NEW_KEY, OLD_KEY = SecretBox.generate_key(), SecretBox.generate_key()  # the app's keys: a rotation begun
PASSWORD = "s3cr3t-legacy-pässword"


@pytest.fixture(scope="module")
def app_container(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    data_dir = Path(tmp_path_factory.mktemp("api-secrets"))
    settings = in_process_settings(
        data_dir, webhooks=WebhookSettings(allow_private=True), admin_api_keys=frozenset({KEY_A}),
        operator_api_keys=frozenset({KEY_A}), secret_keys=(NEW_KEY, OLD_KEY),  # rotation: every tenant's
    )
    container = build(settings, database, KEYS)
    container.clickhouse.drop_all()
    container.clickhouse.ensure_schema()
    # the admin source routes without a capture: nothing is registered without a Kafka Connect URL
    container.runtime.legacy = LegacySources(
        container.store, container.dead_letters, data_dir / "legacy", container.secret_box,
        mode="distributed", allow_private=True,  # the declarations name 127.0.0.1
    )
    try:
        yield container
    finally:
        container.close()


def _declaration(name: str, **changes: Any) -> dict[str, Any]:
    return {
        "name": name, "kind": "mariadb", "tenant": "tenant-a",
        "connection": {"host": "127.0.0.1", "port": 3306, "database": "shop", "user": "cdc",
                       "password": PASSWORD},
        "tables": [{"table": "shop.orders", "translator": "orders"}], **changes,
    }  # fmt: skip


def _stored(container: Container) -> list[str]:
    with container.engine.connect() as conn:
        return [str(v) for v in conn.exec_driver_sql(
            "SELECT s->>'secret' FROM webhook_endpoints, jsonb_array_elements(secrets) s UNION ALL "
            "SELECT spec->'connection'->>'password' FROM cdc_sources"
        ).scalars().all()]  # fmt: skip


def test_no_answer_and_no_log_line_carries_a_secret(
    client: TestClient[Any], app_container: Container, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    answers: list[str] = []

    def call(method: str, path: str, expect: int, **kw: Any) -> Any:
        r = client.request(method, path, **kw)
        assert r.status_code == expect, (method, path, r.text)
        answers.append(f"{method} {path} -> {r.status_code} {dict(r.headers)} {r.text}")
        return r.json() if r.content else None

    made = call("POST", "/v1/webhooks", 201, json={"url": URL}, headers=A)
    first = made.pop("secret")
    ep = made["id"]
    rotated = call("POST", f"/v1/webhooks/{ep}/rotate-secret", 200, headers=A)
    second = rotated.pop("secret")
    assert first != second and first not in json.dumps(rotated)  # the old one is not shown again
    answers.clear()  # the two answers that hand a new secret out once

    call("GET", "/v1/webhooks", 200, headers=A)
    call("GET", f"/v1/webhooks/{ep}", 200, headers=A)
    call("PATCH", f"/v1/webhooks/{ep}", 200, json={"enabled": False}, headers=A)
    call("PATCH", f"/v1/webhooks/{ep}", 200, json={"enabled": True}, headers=A)
    call("POST", f"/v1/webhooks/{ep}/test", 202, headers=A)
    call("GET", f"/v1/webhooks/{ep}/deliveries", 200, headers=A)
    call("POST", f"/v1/webhooks/{ep}/replay", 202, json={"from_position": 1, "to_position": 10}, headers=A)
    call("POST", f"/v1/webhooks/{ep}/replay", 422, json={"from_position": 0}, headers=A)
    call("GET", f"/v1/webhooks/{ep}", 404, headers=B)  # another tenant
    call("POST", f"/v1/webhooks/{ep}/rotate-secret", 404, headers=B)
    call("PATCH", f"/v1/webhooks/{ep}", 422, json={"enabled": "yes"}, headers=A)

    source = call("POST", "/v1/admin/sources", 201, json=_declaration("shop_db"), headers=A)
    assert source["connection"] == {"host": "127.0.0.1", "port": 3306, "database": "shop", "user": "cdc"}
    call("GET", "/v1/admin/sources", 200, headers=A)
    call("GET", "/v1/admin/sources/shop_db", 200, headers=A)
    call("POST", "/v1/admin/sources", 409, json=_declaration("shop_db"), headers=A)  # taken
    call("POST", "/v1/admin/sources", 422, json=_declaration("bad_one", tables=[]), headers=A)
    call("POST", "/v1/admin/sources", 422, json=_declaration("bad_two", kind="oracle"), headers=A)
    call("POST", "/v1/admin/sources?replace=true", 201, json=_declaration("shop_db"), headers=A)
    call("POST", "/v1/admin/secrets/rotate", 200, headers=A)
    call("DELETE", "/v1/admin/sources/shop_db", 200, headers=A)

    every = "\n".join(answers) + "\n" + caplog.text
    for secret in (first, second, first.removeprefix("whsec_"), second.removeprefix("whsec_"), PASSWORD):
        assert secret not in every
    stored = _stored(app_container)
    assert stored and all(key_id_of(v) == app_container.secret_box.newest_key_id for v in stored)


def test_rotate_route_reencrypts_with_the_newest_key_and_says_when_old_keys_may_go(
    client: TestClient[Any], app_container: Container
) -> None:
    newest = app_container.secret_box.newest_key_id
    assert newest == key_id(NEW_KEY)
    # written before the new key was added: under the old one
    old = WebhookStore(app_container.engine, SecretBox([OLD_KEY]))
    secret = "whsec_b2xkLWtleS1zZWNyZXQtMTIzNDU2Nzg5MA=="
    ep = old.create_endpoint("tenant-a", URL, secret)
    client.post("/v1/admin/sources", json=_declaration("rot_db"), headers=A)
    assert key_id(OLD_KEY) in {key_id_of(v) for v in _stored(app_container)}
    done = client.post("/v1/admin/secrets/rotate", headers=A)
    assert done.status_code == 200, done.text
    body = done.json()
    assert set(body) == {
        "newest_key", "rotated", "sealed", "keys_in_use", "unreadable", "older_keys_removable"
    }
    assert body["newest_key"] == newest and body["unreadable"] == [] and body["older_keys_removable"]
    assert body["rotated"] == 1 and body["sealed"] == 0
    assert {key_id_of(v) for v in _stored(app_container)} == {newest}
    # the old key may go: the endpoint's secret opens with the new key alone
    only_new = WebhookStore(app_container.engine, SecretBox([NEW_KEY]))
    assert only_new.get_endpoint("tenant-a", ep.id).signing_secrets() == [secret]  # type: ignore[union-attr]
    assert set(body["keys_in_use"]) == {newest} and body["keys_in_use"][newest] == len(_stored(app_container))
    out = io.StringIO()  # what `agentflow secrets rotate` prints of it
    assert report_rotation(done, out) == 0 and "older keys may be removed" in out.getvalue()
    forbidden = client.post("/v1/admin/secrets/rotate", headers=B)  # tenant B's key is no admin key
    assert forbidden.status_code == 403 and report_rotation(forbidden, io.StringIO()) == 1
    client.delete("/v1/admin/sources/rot_db", headers=A)

"""``agentflow keys create|list|rotate|revoke`` against the in-process app: the command's own argument
parser and request code, over Litestar's test client (an httpx client) instead of a socket."""

from __future__ import annotations

import argparse
import io
import re
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from services.keys_cli import _run, add_keys_command

from .conftest import KEY_ADMIN_A


def keys(client: TestClient[Any], *argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="agentflow")
    add_keys_command(parser.add_subparsers(dest="command"))
    out = io.StringIO()
    return _run(parser.parse_args(["keys", *argv]), client, out), out.getvalue()


@pytest.fixture()
def as_admin(client: TestClient[Any]) -> Iterator[TestClient[Any]]:
    client.headers["X-API-Key"] = KEY_ADMIN_A
    try:
        yield client
    finally:
        del client.headers["X-API-Key"]


def test_create_list_rotate_revoke(as_admin: TestClient[Any], capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = keys(as_admin, "create", "cli reader", "--scopes", "read,write", "--expires-in", "3600")
    assert rc == 0, capsys.readouterr().err
    [key_id] = re.findall(r"key (key_[0-9a-f]+) ", out)
    [secret] = re.findall(r"X-API-Key: (af_\S+)", out)
    assert "not shown again" in out and "scopes read,write" in out
    assert as_admin.get("/v1/catalog", headers={"X-API-Key": secret}).status_code == 200

    rc, out = keys(as_admin, "list")
    assert rc == 0 and key_id in out and "read,write" in out and secret not in out
    assert secret[:16] in out  # the public prefix, no more

    rc, out = keys(as_admin, "rotate", key_id, "--grace", "0")
    assert rc == 0 and f"{key_id} keeps working until" in out
    [new_secret] = re.findall(r"X-API-Key: (af_\S+)", out)
    assert new_secret != secret
    assert as_admin.get("/v1/catalog", headers={"X-API-Key": new_secret}).status_code == 200

    [new_id] = re.findall(r"key (key_[0-9a-f]+) ", out)
    rc, out = keys(as_admin, "revoke", new_id)
    assert rc == 0 and "revoked" in out
    rc, _ = keys(as_admin, "revoke", "key_nope")
    assert rc == 1 and "404" in capsys.readouterr().err
    rc, _ = keys(as_admin, "create", "too much", "--scopes", "operator")
    assert rc == 1 and "403" in capsys.readouterr().err

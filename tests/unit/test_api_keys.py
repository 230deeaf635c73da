"""The access policy of readmodels/api_keys.py as pure logic: key text, scopes, the verification cache
(injected clocks: a verified key is re-read after the TTL, never hashed twice; expiry; failures cached),
and KeyAdmin's tenancy rules. An in-memory store stands in for Postgres here only; the Postgres store
and the HTTP surface are tests/integration/api/test_keys.py."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from readmodels.api_keys import (
    MISS,
    Authenticator,
    InvalidKeyRequest,
    KeyAdmin,
    KeyConflict,
    KeyForbidden,
    KeyNotFound,
    KeyRecord,
    Principal,
    env_principals,
    new_key_text,
    prefix_of,
)


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class MemoryStore:
    def __init__(self) -> None:
        self.rows: dict[str, KeyRecord] = {}
        self.reads = 0

    def insert(self, record: KeyRecord) -> None:
        self.rows[record.id] = record

    def by_prefix(self, prefix: str) -> KeyRecord | None:
        self.reads += 1
        return next((r for r in self.rows.values() if r.prefix == prefix), None)

    def get(self, key_id: str) -> KeyRecord | None:
        return self.rows.get(key_id)

    def list(self, tenant_id: str | None) -> list[KeyRecord]:
        return [r for r in self.rows.values() if tenant_id is None or r.tenant_id == tenant_id]

    def revoke(self, key_id: str, at: datetime) -> KeyRecord | None:
        r = self.rows.get(key_id)
        if r is None:
            return None
        self.rows[key_id] = replace(r, revoked_at=r.revoked_at or at)
        return self.rows[key_id]

    def rotate(self, key_id: str, new: KeyRecord, old_expires_at: datetime) -> KeyRecord | None:
        r = self.rows.get(key_id)
        if r is None or r.revoked_at is not None or r.rotated_to is not None:
            return None
        until = min(r.expires_at or old_expires_at, old_expires_at)
        self.rows[key_id] = replace(r, expires_at=until, rotated_to=new.id)
        self.rows[new.id] = new
        return self.rows[key_id]


class CountingHasher:
    """Hashing is argon2id in production (connectors/api_keys.py); here a transparent one that counts."""

    def __init__(self) -> None:
        self.verified = 0

    def hash(self, key: str) -> str:
        return "h:" + key

    def verify(self, encoded: str, key: str) -> bool:
        self.verified += 1
        return encoded == "h:" + key


ADMIN_A = Principal("tenant-a", frozenset({"read", "write", "admin"}))
OPERATOR = Principal("ops", frozenset({"read", "write", "admin", "operator"}))


@pytest.fixture
def parts() -> tuple[MemoryStore, CountingHasher, Clock, Clock, KeyAdmin, Authenticator]:
    store, hasher, wall, mono = MemoryStore(), CountingHasher(), Clock(), Clock(50.0)
    admin = KeyAdmin(store, hasher, default_grace_s=60.0, clock=wall)
    auth = Authenticator({"env-a": ADMIN_A}, store, hasher, ttl_s=1.0, clock=wall, monotonic=mono)
    return store, hasher, wall, mono, admin, auth


def test_key_text_has_a_lookup_prefix() -> None:
    prefix, key = new_key_text()
    assert len(prefix) == 12 and key.startswith(f"af_{prefix}_") and prefix_of(key) == prefix
    assert new_key_text()[1] != key
    for other in ("", "af_dev_abc", "af_XYZ123456789_" + "a" * 43, "af_0123456789ab_short", key + "\x00"):
        assert prefix_of(other) is None


def test_scopes_and_env_keys() -> None:
    env = env_principals({"k1": "a", "k2": "b", "k3": "c"}, admin={"k2"}, operator={"k3"})
    assert env["k1"].scopes == {"read", "write"} and not env["k1"].allows("admin")
    assert env["k2"].allows("admin") and not env["k2"].allows("operator")
    assert env["k3"].allows("admin") and env["k3"].allows("operator") and env["k3"].may_act_on("a")
    assert env["k2"].may_act_on("b") and not env["k2"].may_act_on("a")


def test_a_stored_key_is_hashed_once_and_re_read_after_the_ttl(parts) -> None:  # type: ignore[no-untyped-def]
    store, hasher, wall, mono, admin, auth = parts
    issued = admin.create(ADMIN_A, "dashboard", ["read"])
    key = issued.secret
    assert auth.cached("env-a") is ADMIN_A and auth.cached(None) is None and auth.cached("nope") is None
    assert auth.cached(key) is MISS
    p = auth.verify(key)
    assert p is not None and p.tenant == "tenant-a" and p.scopes == {"read"} and p.key_id == issued.record.id
    assert hasher.verified == 1 and store.reads == 1
    mono.t += 0.9
    assert auth.cached(key) == p  # within the TTL: no I/O at all
    mono.t += 0.2
    assert auth.cached(key) is MISS  # after it: the row is read again, the hash is not checked again
    assert auth.verify(key) == p and hasher.verified == 1 and store.reads == 2
    other = Authenticator({}, store, hasher, ttl_s=1.0, clock=wall, monotonic=mono)  # another process
    assert other.verify(key) == p
    admin.on_changed = auth.drop  # this process's admin drops its own cache entry at once
    admin.revoke(ADMIN_A, issued.record.id)
    assert auth.cached(key) is MISS and auth.verify(key) is None
    assert auth.cached(key) is None  # refused ones are remembered for the TTL too
    assert other.cached(key) == p  # the other process: until its TTL passes
    mono.t += 1.1
    assert other.cached(key) is MISS and other.verify(key) is None
    assert store.reads == 5


def test_wrong_secret_expiry_and_unknown_prefix(parts) -> None:  # type: ignore[no-untyped-def]
    store, hasher, wall, mono, admin, auth = parts
    issued = admin.create(ADMIN_A, "short", ["read"], expires_in_s=10)
    key = issued.secret
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    assert auth.cached(forged) is MISS and auth.verify(forged) is None
    _, unknown = new_key_text()
    assert auth.verify(unknown) is None
    assert auth.verify(key) is not None
    wall.t += 10
    assert auth.cached(key) is None  # expired: refused even while cached
    mono.t += 2
    assert auth.verify(key) is None


def test_admin_rules(parts) -> None:  # type: ignore[no-untyped-def]
    store, hasher, wall, mono, admin, auth = parts
    with pytest.raises(KeyForbidden) as e:
        admin.create(ADMIN_A, "x", ["read"], tenant="tenant-b")
    assert e.value.code == "cross_tenant"
    with pytest.raises(KeyForbidden) as e:
        admin.create(ADMIN_A, "x", ["operator"])
    assert e.value.code == "insufficient_scope"
    for bad in ([], ["root"], "read,root"):
        with pytest.raises(InvalidKeyRequest):
            admin.create(ADMIN_A, "x", bad)
    with pytest.raises(InvalidKeyRequest):
        admin.create(ADMIN_A, " ", ["read"])
    for lifetime in (0.0, -1.0, 1e300, float("nan")):
        with pytest.raises(InvalidKeyRequest):
            admin.create(ADMIN_A, "x", ["read"], expires_in_s=lifetime)
    with pytest.raises(InvalidKeyRequest):
        admin.create(ADMIN_A, "x", ["read"], expires_at=datetime.fromtimestamp(wall.t - 1, UTC))
    b = admin.create(OPERATOR, "b's", ["read", "write"], tenant="tenant-b")
    ops = admin.create(OPERATOR, "ops in a", ["operator"], tenant="tenant-a")
    assert ops.record.scopes == ("operator",)
    assert [r.id for r in admin.list(ADMIN_A)] == [ops.record.id]
    assert {r.id for r in admin.list(OPERATOR)} == {b.record.id, ops.record.id}
    with pytest.raises(KeyForbidden):
        admin.list(ADMIN_A, "tenant-b")
    for act in (admin.get, admin.revoke, admin.rotate):
        with pytest.raises(KeyNotFound):
            act(ADMIN_A, b.record.id)
    with pytest.raises(KeyForbidden):  # an operator key of its tenant is beyond an admin
        admin.revoke(ADMIN_A, ops.record.id)
    assert store.rows[b.record.id].revoked_at is None and store.rows[ops.record.id].revoked_at is None


def test_rotation_keeps_the_old_key_for_the_grace_period(parts) -> None:  # type: ignore[no-untyped-def]
    store, hasher, wall, mono, admin, auth = parts
    old = admin.create(ADMIN_A, "svc", ["read", "write"])
    done = admin.rotate(ADMIN_A, old.record.id, grace_s=30)
    assert done.previous is not None and done.previous.rotated_to == done.record.id
    assert done.record.scopes == ("read", "write") and done.secret != old.secret
    assert done.previous.expires_at == datetime.fromtimestamp(wall.t, UTC) + timedelta(seconds=30)
    assert auth.verify(old.secret) is not None and auth.verify(done.secret) is not None
    with pytest.raises(KeyConflict):
        admin.rotate(ADMIN_A, old.record.id)
    wall.t += 30
    mono.t += 2
    assert auth.verify(old.secret) is None and auth.verify(done.secret) is not None
    with pytest.raises(InvalidKeyRequest):
        admin.rotate(ADMIN_A, done.record.id, grace_s=-1)

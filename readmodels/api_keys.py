"""API keys, the access policy: who a request is (a :class:`Principal`: tenant and scopes), how a key is
checked fast, and the use cases behind ``/v1/admin/keys`` -- over the storage and hashing ports below
(connectors/api_keys.py implements them: Postgres ``api_keys``, argon2id).

Scopes: ``read`` (reads), ``write`` (commands and the tenant's own downstream set-up), ``admin`` (legacy
sources, replays and the keys of the key's own tenant) and ``operator`` (admin across tenants, rebuilds
of the shared read models; implies ``admin``). A key is ``af_<prefix>_<secret>``: the prefix (12 hex
characters, public) finds one stored row, so a request verifies one hash; a verified key is cached for
at most ``ttl_s`` (1 s), after which the next request re-reads its row (one indexed SELECT, no hash):
a revocation reaches every API process within a second without any message between them.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

log = logging.getLogger("agentflow.keys")

READ, WRITE, ADMIN, OPERATOR = "read", "write", "admin", "operator"
SCOPES: Final = (READ, WRITE, ADMIN, OPERATOR)
PUBLIC: Final = "public"  # a route anyone may call (health probes)
ENV_SCOPES: Final = frozenset({READ, WRITE})  # an AGENTFLOW_API_KEYS key
MAX_GRACE_S: Final = 30 * 24 * 3600.0
MAX_LIFETIME_S: Final = 10 * 366 * 24 * 3600.0
MAX_NAME: Final = 100

_KEY = re.compile(r"af_([0-9a-f]{12})_[A-Za-z0-9_-]{32,128}")
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


def prefix_of(key: str) -> str | None:
    """The lookup prefix of a stored key's text, or None when ``key`` does not have that shape."""
    m = _KEY.fullmatch(key)
    return m.group(1) if m else None


def new_key_text() -> tuple[str, str]:
    """(prefix, key): a fresh key ``af_<12 hex>_<43 url-safe characters>`` (256 random bits)."""
    prefix = secrets.token_hex(6)
    return prefix, f"af_{prefix}_{secrets.token_urlsafe(32)}"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    tenant: str
    scopes: frozenset[str]
    key_id: str | None = None  # None: a key of the environment (AGENTFLOW_API_KEYS, the dev key)
    name: str = "env"
    expires_at: float | None = None  # unix seconds
    env_id: str | None = None  # an environment key's fingerprint (its own rate-limit budget)

    # what the scopes grant: themselves, and admin for an operator (the hot path tests ``in grants``)
    grants: frozenset[str] = field(init=False, repr=False, compare=False)
    # whose budget a request spends (services/rate_limits.py): the key id, or an environment key's
    # fingerprint -- never the key text (worked out once: every request reads it)
    bucket: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        implied = {ADMIN} if OPERATOR in self.scopes else set()
        object.__setattr__(self, "grants", frozenset(self.scopes | implied))
        object.__setattr__(self, "bucket", self.key_id or f"env:{self.env_id}")

    def allows(self, scope: str) -> bool:
        return scope in self.grants

    @property
    def operator(self) -> bool:
        return OPERATOR in self.scopes

    def may_act_on(self, tenant: str | None) -> bool:
        """Whether this caller may read or change what belongs to ``tenant``."""
        return self.operator or tenant == self.tenant

    @property
    def label(self) -> str:
        """Who did it, for logs and ``created_by``: the key id, or ``env:<tenant>``."""
        return self.key_id or f"env:{self.tenant}"


def env_principals(
    keys: Mapping[str, str], admin: Iterable[str] = (), operator: Iterable[str] = ()
) -> dict[str, Principal]:
    """The environment's keys (key -> tenant): read + write; the ``admin`` ones also admin, the
    ``operator`` ones admin and operator."""
    admin, operator = frozenset(admin), frozenset(operator)
    out = {}
    for key, tenant in keys.items():
        scopes = set(ENV_SCOPES)
        if key in admin:
            scopes.add(ADMIN)
        if key in operator:
            scopes |= {ADMIN, OPERATOR}
        fingerprint = hashlib.sha256(key.encode()).hexdigest()[:16]
        out[key] = Principal(tenant, frozenset(scopes), env_id=fingerprint)
    return out


# -- stored keys ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyRecord:
    id: str
    tenant_id: str
    name: str
    prefix: str
    scopes: tuple[str, ...]
    secret_hash: str
    created_at: datetime
    created_by: str | None
    expires_at: datetime | None
    revoked_at: datetime | None
    rotated_to: str | None

    def status(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def principal(self) -> Principal:
        expires = self.expires_at.timestamp() if self.expires_at is not None else None
        return Principal(self.tenant_id, frozenset(self.scopes), self.id, self.name, expires)

    def public(self, now: datetime) -> dict[str, Any]:
        """The key without its hash: what list/get/create answer."""
        return {
            "id": self.id, "tenant_id": self.tenant_id, "name": self.name, "prefix": f"af_{self.prefix}_",
            "scopes": list(self.scopes), "status": self.status(now),
            "created_at": self.created_at.isoformat(), "created_by": self.created_by,
            "expires_at": self.expires_at.isoformat() if self.expires_at is not None else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at is not None else None,
            "rotated_to": self.rotated_to,
        }  # fmt: skip


class KeyStore(Protocol):
    def insert(self, record: KeyRecord) -> None: ...

    def by_prefix(self, prefix: str) -> KeyRecord | None: ...

    def get(self, key_id: str) -> KeyRecord | None: ...

    def list(self, tenant_id: str | None) -> list[KeyRecord]:
        """A tenant's keys (None: every tenant's), oldest first."""
        ...

    def revoke(self, key_id: str, at: datetime) -> KeyRecord | None:
        """Mark revoked (once: a second revoke keeps the first time); the row, or None if unknown."""
        ...

    def rotate(self, key_id: str, new: KeyRecord, old_expires_at: datetime) -> KeyRecord | None:
        """In one transaction: insert ``new`` and let the old key (unrevoked, not rotated before) expire
        at ``old_expires_at`` at the latest, pointing at the new one. The old row, or None when it was
        revoked or rotated meanwhile (nothing inserted)."""
        ...


class KeyHasher(Protocol):
    def hash(self, key: str) -> str: ...

    def verify(self, encoded: str, key: str) -> bool: ...


# -- authentication ------------------------------------------------------------------------------


class Miss:
    def __repr__(self) -> str:
        return "MISS"


MISS: Final = Miss()


@dataclass(slots=True)
class _Verified:
    principal: Principal
    secret_hash: str
    checked: float  # monotonic


class Authenticator:
    """X-API-Key -> Principal. ``cached`` is the hot path (no I/O: an environment key, or a stored key
    verified less than ``ttl_s`` ago); it answers MISS when the store must be asked, and ``verify`` (blocking:
    one SELECT by prefix, and one argon2 verification the first time a key is seen) does that."""

    def __init__(
        self,
        env: Mapping[str, Principal],
        store: KeyStore | None,
        hasher: KeyHasher | None,
        ttl_s: float = 1.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        max_entries: int = 10_000,
    ) -> None:
        # keyed by the key text: a str hash and compare (SHA-256 digests cost more than the rest of the
        # check); key texts are in this process's memory anyway while their requests run
        self._env = dict(env)
        self.store = store
        self.hasher = hasher
        self.ttl_s = ttl_s
        self.clock = clock
        self.monotonic = monotonic
        self.max_entries = max_entries
        self._verified: dict[str, _Verified] = {}
        self._failed: dict[str, float] = {}  # recently refused stored-key texts: no hash twice a second
        # one verification at a time per key text (striped: other keys do not wait behind a hash)
        self._locks = tuple(threading.Lock() for _ in range(16))

    def cached(self, key: str | None) -> Principal | Miss | None:
        if not key:
            return None
        found = self._env.get(key)
        if found is not None:
            return found
        entry = self._verified.get(key)
        now = self.monotonic()
        if entry is not None and now - entry.checked < self.ttl_s:
            expires = entry.principal.expires_at
            return entry.principal if expires is None or self.clock() < expires else None
        failed = self._failed.get(key)
        if failed is not None and now - failed < self.ttl_s:
            return None
        if self.store is None or prefix_of(key) is None:
            return None
        return MISS

    def verify(self, key: str) -> Principal | None:
        """Blocking: the stored key's principal, or None (unknown, wrong secret, revoked, expired)."""
        prefix = prefix_of(key)
        if prefix is None or self.store is None or self.hasher is None:
            return None
        d = key
        with self._locks[hash(key) % len(self._locks)]:
            hit = self.cached(key)  # a concurrent request may have just verified it
            if hit is not MISS:
                return hit  # type: ignore[return-value]
            record = self.store.by_prefix(prefix)
            now = self.clock()
            usable = record is not None and record.status(datetime.fromtimestamp(now, UTC)) == "active"
            previous = self._verified.get(d)
            if usable and record is not None and (
                (previous is not None and previous.secret_hash == record.secret_hash)  # re-check: no hash
                or self.hasher.verify(record.secret_hash, key)
            ):
                principal = record.principal()
                self._remember(self._verified, d, _Verified(principal, record.secret_hash, self.monotonic()))
                self._failed.pop(d, None)
                return principal
            self._verified.pop(d, None)
            self._remember(self._failed, d, self.monotonic())
            return None

    def drop(self, key_id: str) -> None:
        """Forget the verifications of one stored key in this process (its revocation or rotation here:
        refused at once here, within the TTL elsewhere)."""
        for d, entry in list(self._verified.items()):
            if entry.principal.key_id == key_id:
                self._verified.pop(d, None)

    def forget(self) -> None:
        """Drop every cached verification (the next request of each stored key re-reads its row)."""
        self._verified.clear()
        self._failed.clear()

    def _remember(self, cache: dict[str, Any], d: str, value: Any) -> None:
        if len(cache) >= self.max_entries:
            cache.clear()  # bounded memory under a flood of distinct keys; the next requests re-verify
        cache[d] = value


# -- the use cases of /v1/admin/keys -------------------------------------------------------------


class KeyNotFound(LookupError):
    pass


class KeyForbidden(PermissionError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class KeyConflict(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class InvalidKeyRequest(ValueError):
    pass


@dataclass(frozen=True)
class IssuedKey:
    """A created or rotated key: ``secret`` is the key text, shown in this answer only."""

    record: KeyRecord
    secret: str
    previous: KeyRecord | None = None  # rotation: the old key, valid until its expires_at


@dataclass
class KeyAdmin:
    """Create, list, rotate and revoke stored keys. An admin acts on its own tenant's keys (another
    tenant's are not found) and cannot hand out, rotate or revoke more than it holds; an operator acts
    on every tenant's."""

    store: KeyStore
    hasher: KeyHasher
    default_grace_s: float = 24 * 3600.0
    clock: Callable[[], float] = time.time
    new_id: Callable[[], str] = field(default=lambda: "key_" + secrets.token_hex(8))
    # told the id of a key whose validity just changed (the process's Authenticator.drop)
    on_changed: Callable[[str], None] = field(default=lambda key_id: None)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def create(
        self,
        caller: Principal,
        name: str,
        scopes: Iterable[str] | None = None,
        tenant: str | None = None,
        expires_at: datetime | None = None,
        expires_in_s: float | None = None,
    ) -> IssuedKey:
        tenant = caller.tenant if tenant is None else tenant
        if not isinstance(tenant, str) or not _TENANT.fullmatch(tenant):
            raise InvalidKeyRequest("tenant must be 1-64 characters of A-Z a-z 0-9 . _ : - ")
        if not caller.may_act_on(tenant):
            raise KeyForbidden("cross_tenant", "this key may create keys of its own tenant only")
        name = name.strip() if isinstance(name, str) else ""
        if not name or len(name) > MAX_NAME:
            raise InvalidKeyRequest(f"name must be 1-{MAX_NAME} characters")
        wanted = self._scopes(caller, [READ] if scopes is None else scopes)
        now = self.now()
        expiry = self._expiry(now, expires_at, expires_in_s)
        prefix, text = new_key_text()
        secret_hash = self.hasher.hash(text)
        record = KeyRecord(
            self.new_id(), tenant, name, prefix, wanted, secret_hash, now, caller.label, expiry, None, None
        )
        self.store.insert(record)
        log.info("key %s (%s) of tenant %s created by %s: scopes %s, expires %s", record.id, name, tenant,
                 caller.label, ",".join(wanted), expiry.isoformat() if expiry else "never")  # fmt: skip
        return IssuedKey(record, text)

    def list(self, caller: Principal, tenant: str | None = None) -> list[KeyRecord]:
        if tenant is None:
            tenant = None if caller.operator else caller.tenant
        elif not caller.may_act_on(tenant):
            raise KeyForbidden("cross_tenant", "this key may list keys of its own tenant only")
        return self.store.list(tenant)

    def get(self, caller: Principal, key_id: str) -> KeyRecord:
        record = self.store.get(key_id)
        if record is None or not caller.may_act_on(record.tenant_id):
            raise KeyNotFound(f"no key {key_id!r}")
        return record

    def rotate(self, caller: Principal, key_id: str, grace_s: float | None = None) -> IssuedKey:
        """A new key with the old one's tenant, name, scopes and expiry; the old one stays valid for
        ``grace_s`` (default ``default_grace_s``; 0 ends it now)."""
        old = self._mine(caller, key_id, "rotate")
        grace = self.default_grace_s if grace_s is None else grace_s
        if not 0 <= grace <= MAX_GRACE_S:
            raise InvalidKeyRequest(f"grace_seconds must be between 0 and {MAX_GRACE_S:.0f}")
        now = self.now()
        if old.status(now) != "active":
            state = old.status(now)
            raise KeyConflict(f"key_{state}", f"key {key_id} is {state}: create a new one")
        prefix, text = new_key_text()
        secret_hash = self.hasher.hash(text)
        new = KeyRecord(
            self.new_id(), old.tenant_id, old.name, prefix, old.scopes, secret_hash, now, caller.label,
            old.expires_at, None, None,
        )  # fmt: skip
        previous = self.store.rotate(old.id, new, now + timedelta(seconds=grace))
        if previous is None:
            raise KeyConflict("key_rotated", f"key {key_id} was rotated or revoked meanwhile")
        self.on_changed(old.id)
        log.info("key %s of tenant %s rotated by %s: new key %s, the old one valid until %s", old.id,
                 old.tenant_id, caller.label, new.id, previous.expires_at)  # fmt: skip
        return IssuedKey(new, text, previous)

    def revoke(self, caller: Principal, key_id: str) -> KeyRecord:
        """Revoked at once: within a second (the verification cache's TTL) on every API process."""
        self._mine(caller, key_id, "revoke")
        done = self.store.revoke(key_id, self.now())
        if done is None:
            raise KeyNotFound(f"no key {key_id!r}")
        self.on_changed(done.id)
        log.info("key %s of tenant %s revoked by %s", done.id, done.tenant_id, caller.label)
        return done

    def _mine(self, caller: Principal, key_id: str, what: str) -> KeyRecord:
        record = self.get(caller, key_id)
        beyond = [s for s in record.scopes if not caller.allows(s)]
        if beyond:
            raise KeyForbidden("insufficient_scope", f"this key may not {what} a key with scope {beyond[0]}")
        return record

    @staticmethod
    def _scopes(caller: Principal, scopes: Iterable[str]) -> tuple[str, ...]:
        if isinstance(scopes, str):
            scopes = [s for s in scopes.split(",") if s.strip()]
        wanted = {str(s).strip() for s in scopes}
        unknown = sorted(wanted - set(SCOPES))
        if unknown or not wanted:
            raise InvalidKeyRequest(f"scopes must be a non-empty list of {', '.join(SCOPES)}"
                                    + (f"; not {unknown[0]!r}" if unknown else ""))  # fmt: skip
        beyond = [s for s in SCOPES if s in wanted and not caller.allows(s)]
        if beyond:
            raise KeyForbidden("insufficient_scope",
                               f"this key may not create a key with scope {beyond[0]}")  # fmt: skip
        return tuple(s for s in SCOPES if s in wanted)

    @staticmethod
    def _expiry(now: datetime, at: datetime | None, in_s: float | None) -> datetime | None:
        if at is not None and in_s is not None:
            raise InvalidKeyRequest("give expires_at or expires_in_seconds, not both")
        if in_s is not None:
            if not 0 < in_s <= MAX_LIFETIME_S:  # NaN too
                raise InvalidKeyRequest(f"expires_in_seconds must be positive, at most {MAX_LIFETIME_S:.0f}")
            return now + timedelta(seconds=in_s)
        if at is not None:
            if at.tzinfo is None:
                at = at.replace(tzinfo=UTC)
            if at <= now:
                raise InvalidKeyRequest("expires_at must be in the future")
        return at

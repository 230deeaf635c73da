"""API keys in Postgres (``api_keys``, migration 0008) and their argon2id hashing: the storage and hashing
ports of readmodels/api_keys.py, which holds the policy (scopes, tenancy, the verification cache)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from connectors.database import AutocommitStore
from readmodels.api_keys import KeyRecord

_COLS = (
    "id, tenant_id, name, prefix, scopes, secret_hash, created_at, created_by, expires_at, revoked_at, "
    "rotated_to"
)

INSERT_SQL = f"""
INSERT INTO api_keys ({_COLS})
VALUES (%(id)s, %(tenant_id)s, %(name)s, %(prefix)s, %(scopes)s, %(secret_hash)s, %(created_at)s,
        %(created_by)s, %(expires_at)s, NULL, NULL)
"""
BY_PREFIX_SQL = f"SELECT {_COLS} FROM api_keys WHERE prefix = %(prefix)s"
GET_SQL = f"SELECT {_COLS} FROM api_keys WHERE id = %(id)s"
LIST_SQL = f"""
SELECT {_COLS} FROM api_keys WHERE %(tenant)s::text IS NULL OR tenant_id = %(tenant)s ORDER BY created_at, id
"""
REVOKE_SQL = f"""
UPDATE api_keys SET revoked_at = COALESCE(revoked_at, %(at)s), updated_at = now()
WHERE id = %(id)s RETURNING {_COLS}
"""
RETIRE_SQL = f"""
UPDATE api_keys SET rotated_to = %(new)s, expires_at = LEAST(COALESCE(expires_at, %(until)s), %(until)s),
       updated_at = now()
WHERE id = %(id)s AND revoked_at IS NULL AND rotated_to IS NULL RETURNING {_COLS}
"""


def _record(row: Sequence[Any]) -> KeyRecord:
    values = list(row)
    values[4] = tuple(values[4])
    return KeyRecord(*values)


def _params(r: KeyRecord) -> dict[str, Any]:
    return {
        "id": r.id, "tenant_id": r.tenant_id, "name": r.name, "prefix": r.prefix, "scopes": list(r.scopes),
        "secret_hash": r.secret_hash, "created_at": r.created_at, "created_by": r.created_by,
        "expires_at": r.expires_at,
    }  # fmt: skip


class PostgresKeyStore(AutocommitStore):
    def insert(self, record: KeyRecord) -> None:
        with self._ac.connect() as conn:
            conn.exec_driver_sql(INSERT_SQL, _params(record))

    def by_prefix(self, prefix: str) -> KeyRecord | None:
        row = self._one(BY_PREFIX_SQL, {"prefix": prefix})
        return _record(row) if row is not None else None

    def get(self, key_id: str) -> KeyRecord | None:
        row = self._one(GET_SQL, {"id": key_id})
        return _record(row) if row is not None else None

    def list(self, tenant_id: str | None) -> list[KeyRecord]:
        return [_record(r) for r in self._all(LIST_SQL, {"tenant": tenant_id})]

    def revoke(self, key_id: str, at: datetime) -> KeyRecord | None:
        row = self._one(REVOKE_SQL, {"id": key_id, "at": at})
        return _record(row) if row is not None else None

    def rotate(self, key_id: str, new: KeyRecord, old_expires_at: datetime) -> KeyRecord | None:
        with self.engine.begin() as conn:
            retire = {"id": key_id, "new": new.id, "until": old_expires_at}
            row = conn.exec_driver_sql(RETIRE_SQL, retire).first()
            if row is None:
                return None
            conn.exec_driver_sql(INSERT_SQL, _params(new))
        return _record(row)


class Argon2Hasher:
    """argon2id at OWASP's minimum cost (19 MiB, 2 passes, 1 lane): ~25 ms a verification here, paid once
    per key and process (the verification cache of readmodels/api_keys.py keeps the result)."""

    def __init__(self, time_cost: int = 2, memory_cost: int = 19 * 1024, parallelism: int = 1) -> None:
        self._ph = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism, type=Type.ID
        )

    def hash(self, key: str) -> str:
        return self._ph.hash(key)

    def verify(self, encoded: str, key: str) -> bool:
        try:
            return self._ph.verify(encoded, key)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

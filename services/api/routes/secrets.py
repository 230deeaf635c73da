"""``/v1/admin/secrets/rotate``: re-encrypt every stored secret (webhook signing secrets, legacy source
passwords) with the newest key of this process (services/secrets.py, docs/security.md). Admin action;
the answer counts values per key id, never a secret or a key. Every tenant's secrets: operator keys only."""

from __future__ import annotations

import msgspec
from litestar import post
from litestar.di import NamedDependency

from readmodels.api_keys import Principal
from services.api.blocking import in_thread
from services.api.dependencies import OPERATOR
from services.api.openapi import errors
from services.secrets import StoredSecrets


class SecretRotation(msgspec.Struct):
    newest_key: str  # the id of the key that encrypts now
    rotated: int  # values re-encrypted with it now
    sealed: int  # values that were still plaintext, encrypted now
    keys_in_use: dict[str, int]  # key id -> stored values encrypted with it, after the rotation
    unreadable: list[str]  # stored secrets under a key this process lacks (left as they are)
    older_keys_removable: bool  # every stored secret is under the newest key


@post("/v1/admin/secrets/rotate", opt=OPERATOR, status_code=200, responses=errors(401, 403))
@in_thread
def rotate_secrets(
    principal: NamedDependency[Principal], stored_secrets: NamedDependency[StoredSecrets]
) -> SecretRotation:
    """Put a new key first (AGENTFLOW_SECRET_KEYS or the data dir's secret-keys file) in every process,
    restart them, then call this: afterwards the older keys may be removed if ``older_keys_removable``."""
    report = stored_secrets.rotate()
    newest = stored_secrets.box.newest_key_id
    return SecretRotation(
        newest_key=newest, rotated=report.rotated, sealed=report.sealed, keys_in_use=dict(report.by_key),
        unreadable=list(report.unreadable),
        older_keys_removable=not report.unreadable and set(report.by_key) <= {newest},
    )  # fmt: skip


SECRET_ROUTES = [rotate_secrets]

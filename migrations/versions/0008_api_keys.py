"""API keys: hashed (argon2id), found by a public prefix, scoped, expiring, revocable
(connectors/api_keys.py; policy in readmodels/api_keys.py).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = """
CREATE TABLE api_keys (
    id           text        PRIMARY KEY,            -- key_<16 hex>: how the key is named in the API
    tenant_id    text        NOT NULL,
    name         text        NOT NULL,
    prefix       text        NOT NULL UNIQUE,        -- the 12 hex characters after af_: the lookup
    secret_hash  text        NOT NULL,               -- argon2id of the whole key text; never answered
    scopes       text[]      NOT NULL CHECK (cardinality(scopes) > 0
                                             AND scopes <@ ARRAY['read', 'write', 'admin', 'operator']),
    created_at   timestamptz NOT NULL,
    created_by   text,                               -- the creating key's id, or env:<tenant>
    expires_at   timestamptz,                        -- a rotated-out key: the end of its grace period
    revoked_at   timestamptz,
    rotated_to   text,                               -- the key that replaced this one
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at);
"""

DOWNGRADE = "DROP TABLE IF EXISTS api_keys;"


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)

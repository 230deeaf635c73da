"""Legacy CDC sources: their declarations and capture status (connectors/legacy/registry.py).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = """
CREATE TABLE cdc_sources (
    name              text        PRIMARY KEY,
    kind              text        NOT NULL,
    -- the declaration as added (connectors/legacy/sources.py parses it)
    spec              jsonb       NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    -- capture status, written by whichever process captures the source
    state             text        NOT NULL DEFAULT 'pending',  -- pending|snapshot|streaming|error
    records           bigint      NOT NULL DEFAULT 0,  -- change records seen
    applied           bigint      NOT NULL DEFAULT 0,  -- records that moved the domain
    unchanged         bigint      NOT NULL DEFAULT 0,  -- records already reflected, or ignored on purpose
    dead_letters      bigint      NOT NULL DEFAULT 0,
    events            bigint      NOT NULL DEFAULT 0,  -- domain events appended
    schema_changes    bigint      NOT NULL DEFAULT 0,
    last_position     text,
    last_commit_at    timestamptz,  -- legacy commit time of the last record
    last_applied_at   timestamptz,  -- when we finished it
    last_event_position bigint,     -- event-store position of the last appended event
    last_schema_change text,
    last_error        text,
    last_error_at     timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
"""

DOWNGRADE = "DROP TABLE IF EXISTS cdc_sources;"


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)

"""Dead letters: events a pipeline could not parse, validate or project.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = """
CREATE TABLE dead_letters (
    id          bigserial   PRIMARY KEY,
    tenant_id   text,
    pipeline    text        NOT NULL,  -- 'distributed' | 'embedded'
    stage       text        NOT NULL,  -- 'parse' | 'validate' | 'project'
    reason      text        NOT NULL,
    -- the event id, or a digest of the raw record when the record has none (see connectors/dead_letters.py)
    event_id    text        NOT NULL,
    position    bigint,
    event_type  text,
    record      jsonb,
    status      text        NOT NULL DEFAULT 'failed',
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- redelivered dead letters (at-least-once pipelines) insert ON CONFLICT DO NOTHING
    CONSTRAINT dead_letters_pipeline_event_stage_key UNIQUE (pipeline, event_id, stage)
);
CREATE INDEX dead_letters_tenant_created_idx ON dead_letters (tenant_id, created_at DESC);
CREATE INDEX dead_letters_position_idx ON dead_letters (position);
"""

DOWNGRADE = "DROP TABLE IF EXISTS dead_letters;"


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)

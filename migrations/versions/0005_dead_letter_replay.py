"""Dead letters: replay and dismissal (statuses failed -> replay_pending -> replayed | dismissed).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = """
ALTER TABLE dead_letters
    ADD COLUMN updated_at      timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN replayed_at     timestamptz,
    ADD COLUMN dismissed_at    timestamptz,
    -- the corrected event appended to the store by the replay (its position and id)
    ADD COLUMN replay_position bigint,
    ADD COLUMN replay_event_id text,
    -- the data the replay appended (the original event's data when no correction was given)
    ADD COLUMN corrected_data  jsonb,
    -- why it was dismissed, or the last replay error
    ADD COLUMN status_note     text,
    ADD CONSTRAINT dead_letters_status_check
        CHECK (status IN ('failed', 'replay_pending', 'replayed', 'dismissed'));
-- the tenant's listing (newest first, cursor on id) with and without a status filter
CREATE INDEX dead_letters_tenant_id_idx ON dead_letters (tenant_id, id DESC);
CREATE INDEX dead_letters_tenant_status_id_idx ON dead_letters (tenant_id, status, id DESC);
"""

DOWNGRADE = """
DROP INDEX IF EXISTS dead_letters_tenant_status_id_idx;
DROP INDEX IF EXISTS dead_letters_tenant_id_idx;
ALTER TABLE dead_letters
    DROP CONSTRAINT IF EXISTS dead_letters_status_check,
    DROP COLUMN IF EXISTS status_note,
    DROP COLUMN IF EXISTS corrected_data,
    DROP COLUMN IF EXISTS replay_event_id,
    DROP COLUMN IF EXISTS replay_position,
    DROP COLUMN IF EXISTS dismissed_at,
    DROP COLUMN IF EXISTS replayed_at,
    DROP COLUMN IF EXISTS updated_at;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)

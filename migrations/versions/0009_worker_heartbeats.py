"""Worker heartbeats: every worker-fleet process (``agentflow worker``, and the alert workers of each
serving process) rewrites its row every 5 s; ``/v1/health`` lists the rows younger than 15 s
(connectors/worker_heartbeats.py). Unlogged: a heartbeat is worth nothing after a crash.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = """
CREATE UNLOGGED TABLE worker_heartbeats (
    worker_id  text        PRIMARY KEY,       -- <host>:<pid>
    queues     text[]      NOT NULL,          -- the Dramatiq queues its worker threads consume
    info       jsonb       NOT NULL,          -- threads alive, broker, relay, ...
    beat_at    timestamptz NOT NULL
);
"""

DOWNGRADE = "DROP TABLE IF EXISTS worker_heartbeats;"


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)

"""Event store, idempotency keys, command rejections, projection checkpoints, id sequences.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID_SEQUENCES = ("order_number_seq", "payment_number_seq", "product_number_seq", "user_number_seq")

UPGRADE = """
-- CACHE 1 (the default) matters: the tailer's watermark reads last_value of this sequence.
CREATE SEQUENCE events_position_seq AS bigint;

CREATE TABLE events (
    position        bigint      PRIMARY KEY DEFAULT nextval('events_position_seq'),
    tenant_id       text        NOT NULL,
    stream_type     text        NOT NULL,
    stream_id       text        NOT NULL,
    stream_version  integer     NOT NULL CHECK (stream_version > 0),
    event_id        uuid        NOT NULL DEFAULT gen_random_uuid(),
    event_type      text        NOT NULL,
    schema_version  integer     NOT NULL DEFAULT 1,
    data            jsonb       NOT NULL,
    metadata        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    occurred_at     timestamptz NOT NULL DEFAULT now(),
    recorded_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- appenders take the xid BEFORE nextval (see connectors/event_store.py); tailers rely on it
    transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    CONSTRAINT events_stream_version_key UNIQUE (tenant_id, stream_type, stream_id, stream_version)
);
ALTER SEQUENCE events_position_seq OWNED BY events.position;
CREATE INDEX events_txid_position_idx ON events (transaction_id, position);
CREATE INDEX events_tenant_occurred_idx ON events (tenant_id, occurred_at);

-- The store is append-only: the source of truth is never rewritten (TRUNCATE stays possible for tests).
CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events is append-only (% rejected)', TG_OP USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();

CREATE TABLE idempotency_keys (
    tenant_id    text        NOT NULL,
    key          text        NOT NULL,
    request_hash text        NOT NULL,
    status_code  integer     NOT NULL,
    response     jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);

CREATE TABLE command_rejections (
    id        bigserial   PRIMARY KEY,
    tenant_id text        NOT NULL,
    command   text        NOT NULL,
    code      text        NOT NULL,
    detail    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX command_rejections_tenant_at_idx ON command_rejections (tenant_id, at);

CREATE TABLE projection_checkpoints (
    name          text        PRIMARY KEY,
    last_txid     bigint      NOT NULL DEFAULT 0,
    last_position bigint      NOT NULL DEFAULT 0,
    watermark     bigint      NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
"""

DOWNGRADE = """
DROP TABLE IF EXISTS projection_checkpoints;
DROP TABLE IF EXISTS command_rejections;
DROP TABLE IF EXISTS idempotency_keys;
DROP TABLE IF EXISTS events;
DROP FUNCTION IF EXISTS events_append_only();
"""


def upgrade() -> None:
    op.execute(UPGRADE)
    for seq in ID_SEQUENCES:
        op.execute(f"CREATE SEQUENCE {seq} AS bigint")


def downgrade() -> None:
    for seq in ID_SEQUENCES:
        op.execute(f"DROP SEQUENCE IF EXISTS {seq}")
    op.execute(DOWNGRADE)

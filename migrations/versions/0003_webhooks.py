"""Webhooks: endpoints (subscriptions), deliveries (the outbox the workers drain), attempts (the log).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = """
CREATE TABLE webhook_endpoints (
    id              text        PRIMARY KEY,
    tenant_id       text        NOT NULL,
    url             text        NOT NULL,
    description     text        NOT NULL DEFAULT '',
    event_types     text[]      NOT NULL DEFAULT '{}',   -- empty = every event type
    entity_ids      text[]      NOT NULL DEFAULT '{}',   -- empty = every stream id
    predicates      jsonb       NOT NULL DEFAULT '[]',   -- [{field, op, value}] on the event data
    -- [{secret, expires_at}]: the first is current; older ones sign too until they expire (rotation)
    secrets         jsonb       NOT NULL,
    status          text        NOT NULL DEFAULT 'active',  -- 'active' | 'disabled'
    disabled_reason text,
    -- events at or below this position predate the endpoint and are not delivered to it
    start_position  bigint      NOT NULL DEFAULT 0,
    -- one worker drains an endpoint at a time (keeps deliveries in order); expires if it dies
    lease_owner     text,
    lease_until     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_tenant_idx ON webhook_endpoints (tenant_id, created_at);

CREATE TABLE webhook_deliveries (
    id              bigserial   PRIMARY KEY,               -- per-endpoint delivery order
    message_id      text        NOT NULL UNIQUE,           -- webhook-id header, stable across retries
    tenant_id       text        NOT NULL,
    endpoint_id     text        NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    kind            text        NOT NULL,                  -- 'event' | 'test' | 'alert' | ...
    dedup_key       text        NOT NULL,                  -- the event id for events
    event_id        uuid,
    position        bigint,
    event_type      text        NOT NULL,
    body            text        NOT NULL,                  -- exact bytes sent (UTF-8 JSON)
    -- 'pending' | 'delivering' | 'succeeded' | 'exhausted' | 'failed' (410 Gone)
    status          text        NOT NULL DEFAULT 'pending',
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_status     integer,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    CONSTRAINT webhook_deliveries_endpoint_dedup_key UNIQUE (endpoint_id, dedup_key)
);
-- the head of each endpoint's queue, and the sweep's scan for due work
CREATE INDEX webhook_deliveries_open_idx ON webhook_deliveries (endpoint_id, id)
    WHERE status IN ('pending', 'delivering');
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
    WHERE status IN ('pending', 'delivering');
CREATE INDEX webhook_deliveries_endpoint_log_idx ON webhook_deliveries (endpoint_id, id DESC);

CREATE TABLE webhook_attempts (
    id               bigserial   PRIMARY KEY,
    delivery_id      bigint      NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt          integer     NOT NULL,
    started_at       timestamptz NOT NULL,
    latency_ms       double precision,
    status_code      integer,
    -- 'succeeded' | 'failed' | 'gone' | 'timeout' | 'error' | 'blocked' | 'interrupted'
    outcome          text        NOT NULL,
    error            text,
    response_excerpt text,
    retry_at         timestamptz
);
CREATE INDEX webhook_attempts_delivery_idx ON webhook_attempts (delivery_id, attempt);
"""

DOWNGRADE = """
DROP TABLE IF EXISTS webhook_attempts;
DROP TABLE IF EXISTS webhook_deliveries;
DROP TABLE IF EXISTS webhook_endpoints;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)

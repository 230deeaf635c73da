"""Alerts: threshold rules on metrics, their evaluation state, and the history of their transitions.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = """
CREATE TABLE alert_rules (
    id                 text             PRIMARY KEY,
    tenant_id          text             NOT NULL,
    name               text             NOT NULL,
    description        text             NOT NULL DEFAULT '',
    metric             text             NOT NULL,
    metric_window      text             NOT NULL,
    currency           text,                                -- NULL = the reporting currency
    filters            jsonb            NOT NULL DEFAULT '{}', -- dimension -> value
    condition          text             NOT NULL,            -- 'above' | 'below' | 'change_pct'
    threshold          double precision NOT NULL,
    direction          text             NOT NULL DEFAULT 'either', -- change_pct: 'up' | 'down' | 'either'
    compare_to         text             NOT NULL DEFAULT 'previous_evaluation', -- or 'previous_window'
    for_s              double precision NOT NULL DEFAULT 0,
    keep_firing_for_s  double precision NOT NULL DEFAULT 0,
    cooldown_s         double precision NOT NULL DEFAULT 0,
    notify_resolved    boolean          NOT NULL DEFAULT true,
    endpoint_id        text,                                -- NULL = endpoints subscribed to alert.*
    enabled            boolean          NOT NULL DEFAULT true,
    -- evaluation state (readmodels/alerts.py), changed only under a row lock
    state              text             NOT NULL DEFAULT 'inactive', -- inactive|pending|firing|resolved
    state_since        timestamptz,
    pending_since      timestamptz,
    firing_since       timestamptz,
    clear_since        timestamptz,                         -- firing, condition false since
    last_fired_at      timestamptz,
    last_value         double precision,
    last_evaluated_at  timestamptz,
    last_error         text,
    seq                bigint           NOT NULL DEFAULT 0, -- transitions so far
    next_check_at      timestamptz      DEFAULT now(),      -- when time alone may change the state
    created_at         timestamptz      NOT NULL DEFAULT now(),
    updated_at         timestamptz      NOT NULL DEFAULT now()
);
CREATE INDEX alert_rules_tenant_idx ON alert_rules (tenant_id, created_at);
CREATE INDEX alert_rules_metric_idx ON alert_rules (tenant_id, metric) WHERE enabled;

CREATE TABLE alert_history (
    id           bigserial        PRIMARY KEY,
    rule_id      text             NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
    tenant_id    text             NOT NULL,
    seq          bigint           NOT NULL,
    from_state   text             NOT NULL,
    to_state     text             NOT NULL,
    at           timestamptz      NOT NULL,
    value        double precision,
    baseline     double precision,
    threshold    double precision NOT NULL,
    notified     text[]           NOT NULL DEFAULT '{}',    -- webhook-ids of the notifications
    details      jsonb            NOT NULL DEFAULT '{}',
    -- one row per transition: a second evaluator can never record (or notify) the same one again
    CONSTRAINT alert_history_rule_seq UNIQUE (rule_id, seq)
);
CREATE INDEX alert_history_rule_idx ON alert_history (rule_id, id DESC);
"""

DOWNGRADE = """
DROP TABLE IF EXISTS alert_history;
DROP TABLE IF EXISTS alert_rules;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)

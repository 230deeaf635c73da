"""Stock of orders shipped before shipping consumed reservations: one StockShipped per held reservation.

Before StockShipped existed, shipping an order left its units reserved and on hand forever. This
appends, once, a StockShipped event on each product stream for every reservation still held by an
order that has shipped (quantity = what it still holds), so on_hand and reserved come out right after
the upgrade in every read model (the events flow through the tailers, Debezium and Flink like any
other). It writes through the same columns as the event store's append, taking the transaction id
before the first position (the tailers' commit-order rule). Reads ``as_of`` a time before the upgrade
keep the figures of then; the events carry ``metadata.upgrade``.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SETTLE = """
WITH held AS (
    SELECT tenant_id, stream_id AS product_id, data->>'order_id' AS order_id,
           sum(CASE event_type
                   WHEN 'StockReserved' THEN (data->>'quantity')::bigint
                   WHEN 'StockReleased' THEN -(data->>'quantity')::bigint
                   ELSE -(data->>'from_reserved')::bigint
               END) AS quantity
    FROM events
    WHERE stream_type = 'product' AND event_type IN ('StockReserved', 'StockReleased', 'StockShipped')
    GROUP BY 1, 2, 3
),
shipped AS (
    SELECT DISTINCT tenant_id, stream_id AS order_id
    FROM events WHERE stream_type = 'order' AND event_type = 'OrderShipped'
),
todo AS (
    SELECT h.tenant_id, h.product_id, h.order_id, h.quantity,
           row_number() OVER (PARTITION BY h.tenant_id, h.product_id ORDER BY h.order_id) AS n
    FROM held h JOIN shipped s ON s.tenant_id = h.tenant_id AND s.order_id = h.order_id
    WHERE h.quantity > 0
),
head AS (
    SELECT tenant_id, stream_id, max(stream_version) AS version
    FROM events WHERE stream_type = 'product' GROUP BY 1, 2
)
INSERT INTO events (tenant_id, stream_type, stream_id, stream_version, event_type, schema_version, data,
                    metadata, transaction_id)
SELECT t.tenant_id, 'product', t.product_id, h.version + t.n, 'StockShipped', 1,
       jsonb_build_object('product_id', t.product_id, 'order_id', t.order_id, 'quantity', t.quantity,
                          'from_reserved', t.quantity),
       jsonb_build_object('actor', 'migration 0007', 'upgrade', 'settle_shipped_reservations'),
       pg_current_xact_id()
FROM todo t JOIN head h ON h.tenant_id = t.tenant_id AND h.stream_id = t.product_id
ORDER BY t.tenant_id, t.product_id, t.n
"""


def upgrade() -> None:
    op.execute("SELECT pg_current_xact_id()")  # the xid first, then positions (see 0001)
    op.execute(SETTLE)


def downgrade() -> None:
    """The store is append-only: the settling events stay (they describe what happened)."""

"""The read-model tables: columns and types (ClickHouse dialect), keys and secondary indexes.

Every table is ReplacingMergeTree(version) ordered by (tenant_id, key...) and read with FINAL; the
stores in connectors/ create them from here, and the query services in readmodels/ read them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from projections.rows import ORDERS, SESSIONS

TS = "DateTime64(3, 'UTC')"
NTS = f"Nullable({TS})"

# table -> ordered (column, type); tenant_id and version are added around these
COLUMNS: dict[str, list[tuple[str, str]]] = {
    "orders": [
        ("order_id", "String"),
        ("user_id", "String"),
        ("status", "LowCardinality(String)"),
        ("currency", "LowCardinality(String)"),
        ("channel", "LowCardinality(String)"),
        ("total_minor", "Int64"),
        ("paid_minor", "Int64"),
        ("refunded_minor", "Int64"),
        ("payment_id", "String"),
        ("payment_status", "LowCardinality(String)"),
        ("lines", "String"),
        ("placed_at", TS),
        ("confirmed_at", NTS),
        ("shipped_at", NTS),
        ("delivered_at", NTS),
        ("cancelled_at", NTS),
        ("refunded_at", NTS),
        ("updated_at", TS),
    ],
    "order_lines": [
        ("order_id", "String"),
        ("line_no", "UInt32"),
        ("product_id", "String"),
        ("category", "LowCardinality(String)"),
        ("quantity", "Int64"),
        ("unit_price_minor", "Int64"),
        ("currency", "LowCardinality(String)"),
        ("user_id", "String"),
        ("placed_at", TS),
        ("cancelled", "UInt8"),
    ],
    "payments": [
        ("payment_id", "String"),
        ("order_id", "String"),
        ("amount_minor", "Int64"),
        ("currency", "LowCardinality(String)"),
        ("method", "LowCardinality(String)"),
        ("status", "LowCardinality(String)"),
        ("refunded_minor", "Int64"),
        ("failure_reason", "String"),
        ("initiated_at", TS),
        ("completed_at", NTS),
        ("failed_at", NTS),
    ],
    "products": [
        ("product_id", "String"),
        ("name", "String"),
        ("category", "LowCardinality(String)"),
        ("price_minor", "Int64"),
        ("currency", "LowCardinality(String)"),
        ("on_hand", "Int64"),
        ("reserved", "Int64"),
        ("updated_at", TS),
    ],
    "users": [
        ("user_id", "String"),
        ("name", "String"),
        ("email", "String"),
        ("region", "LowCardinality(String)"),
        ("registered_at", TS),
    ],
    "sessions": [
        ("session_id", "String"),
        ("user_id", "String"),
        ("started_at", TS),
        ("last_event_at", TS),
        ("event_count", "UInt32"),
        ("pages", "Array(String)"),
        ("funnel_stage", "LowCardinality(String)"),
        ("is_conversion", "UInt8"),
    ],
    "stock_movements": [
        ("position", "Int64"),
        ("product_id", "String"),
        ("category", "LowCardinality(String)"),
        ("kind", "LowCardinality(String)"),
        ("units", "Int64"),
        ("on_hand_delta", "Int64"),
        ("order_id", "String"),
        ("reason", "LowCardinality(String)"),
        ("moved_at", TS),
    ],
    "events": [
        ("position", "Int64"),
        ("event_id", "String"),
        ("event_type", "LowCardinality(String)"),
        ("stream_type", "LowCardinality(String)"),
        ("stream_id", "String"),
        ("stream_version", "Int64"),
        ("schema_version", "UInt16"),
        ("occurred_at", TS),
        ("recorded_at", TS),
        ("command_id", "String"),
        ("correlation_id", "String"),
        ("data", "String"),
        ("metadata", "String"),
    ],
}
JSON_COLUMNS = {("orders", "lines")}
# secondary lookups (user entity, lineage)
INDEXES = {
    "orders": ["INDEX idx_user user_id TYPE bloom_filter GRANULARITY 4"],
    "order_lines": ["INDEX idx_user user_id TYPE bloom_filter GRANULARITY 4"],
    "events": ["INDEX idx_stream stream_id TYPE bloom_filter GRANULARITY 4"],
}

# the tables the hot baseline metrics read, written before the watermark moves; a reader of a metric over
# any other table (events, order lines, payments, products, stock movements) flushes the deferred rows first
METRIC_TABLES = frozenset({ORDERS, SESSIONS})

def columns(table: str) -> list[tuple[str, str]]:
    """Every column of ``table`` in order: tenant_id, the table's own, version."""
    return [("tenant_id", "String"), *COLUMNS[table], ("version", "UInt64")]


def ms(value: datetime) -> int:
    """Epoch milliseconds, for binding as ``fromUnixTimestamp64Milli({x:Int64}, 'UTC')``."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)

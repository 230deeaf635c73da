"""Flink SQL for the job's sinks: Kafka topics keyed by stream id, and the Iceberg lake tables.

The Iceberg catalog is Iceberg's JdbcCatalog on the Postgres that holds the event store: the same
``iceberg_tables`` rows pyiceberg's SqlCatalog reads (readmodels/iceberg_sink.py), so both
deployments query one lake layout.
"""

from __future__ import annotations

from typing import Any

NAMESPACE = "agentflow"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _with(options: dict[str, str]) -> str:
    return ",\n  ".join(f"{_quote(k)} = {_quote(v)}" for k, v in options.items())


def kafka_sink_ddl(name: str, topic: str, bootstrap: str) -> str:
    options = {
        "connector": "kafka",
        "topic": topic,
        "properties.bootstrap.servers": bootstrap,
        "properties.linger.ms": "1",
        "key.format": "raw",
        "key.fields": "k",
        "value.format": "raw",
        "value.fields-include": "EXCEPT_KEY",
        "sink.delivery-guarantee": "at-least-once",
    }
    return f"CREATE TEMPORARY TABLE {name} (k STRING, v STRING) WITH (\n  {_with(options)}\n)"


def catalog_ddl(args: Any) -> str:
    options = {
        "type": "iceberg",
        "catalog-impl": "org.apache.iceberg.jdbc.JdbcCatalog",
        "uri": args.jdbc_url,
        "jdbc.user": args.jdbc_user,
        "jdbc.password": args.jdbc_password,
        "warehouse": args.warehouse,
    }
    return f"CREATE CATALOG {args.catalog_name} WITH (\n  {_with(options)}\n)"


# Iceberg tables the job writes: (column, type), type one of STRING, BIGINT, INT, TS (timestamptz,
# carried through the stream as epoch milliseconds). They mirror readmodels/iceberg_sink.SCHEMAS
# (tests/unit/test_flink_pipeline.py holds them equal), so both deployments write one lake layout.
S, L, INT, TS = "STRING", "BIGINT", "INT", "TS"
LAKE_TABLES: dict[str, list[tuple[str, str]]] = {
    "events": [
        ("tenant_id", S), ("position", L), ("event_id", S), ("event_type", S), ("stream_type", S),
        ("stream_id", S), ("stream_version", L), ("schema_version", INT), ("occurred_at", TS),
        ("recorded_at", TS), ("transaction_id", L), ("command_id", S), ("correlation_id", S),
        ("data", S), ("metadata", S),
    ],
    "orders_history": [
        ("tenant_id", S), ("order_id", S), ("version", L), ("event_type", S), ("user_id", S),
        ("status", S), ("currency", S), ("channel", S), ("total_minor", L), ("paid_minor", L),
        ("refunded_minor", L), ("payment_id", S), ("payment_status", S), ("lines", S),
        ("placed_at", TS), ("confirmed_at", TS), ("shipped_at", TS), ("delivered_at", TS),
        ("cancelled_at", TS), ("refunded_at", TS), ("updated_at", TS),
    ],
    "payments_history": [
        ("tenant_id", S), ("payment_id", S), ("version", L), ("event_type", S), ("order_id", S),
        ("amount_minor", L), ("currency", S), ("method", S), ("status", S), ("refunded_minor", L),
        ("failure_reason", S), ("initiated_at", TS), ("completed_at", TS), ("failed_at", TS),
    ],
}  # fmt: skip


def _sql_type(ty: str) -> str:
    return "TIMESTAMP_LTZ(6)" if ty == TS else ty


def _column_list(table: str) -> str:
    return ",\n  ".join(f"`{c}` {_sql_type(t)}" for c, t in LAKE_TABLES[table])


def _select_list(table: str) -> str:
    return ", ".join(f"TO_TIMESTAMP_LTZ(`{c}`, 3)" if t == TS else f"`{c}`" for c, t in LAKE_TABLES[table])


def ddl_statements(args: Any, lake: bool) -> list[str]:
    out = [
        kafka_sink_ddl("serving_sink", f"{args.topic_prefix}.serving", args.bootstrap),
        kafka_sink_ddl("dead_letter_sink", f"{args.topic_prefix}.deadletter", args.bootstrap),
    ]
    if lake:
        out += [catalog_ddl(args), f"CREATE DATABASE IF NOT EXISTS {args.catalog_name}.{NAMESPACE}"]
        out += [
            f"CREATE TABLE IF NOT EXISTS {args.catalog_name}.{NAMESPACE}.{t} (\n  {_column_list(t)}\n)"
            for t in LAKE_TABLES
        ]
    return out


def insert_statements(args: Any, lake: bool) -> list[str]:
    out = [
        "INSERT INTO serving_sink SELECT k, v FROM serving_out",
        "INSERT INTO dead_letter_sink SELECT k, v FROM dead_letter_out",
    ]
    if lake:
        out += [
            f"INSERT INTO {args.catalog_name}.{NAMESPACE}.{t} SELECT {_select_list(t)} FROM lake_{t}"
            for t in LAKE_TABLES
        ]
    return out

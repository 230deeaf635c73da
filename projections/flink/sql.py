"""Flink SQL for the job's sinks: Kafka topics keyed by stream id, and the Iceberg events table.

The Iceberg catalog is Iceberg's JdbcCatalog on the Postgres that holds the event store: the same
``iceberg_tables`` rows pyiceberg's SqlCatalog reads (readmodels/iceberg_sink.py), so both
deployments query one lake layout. The table's columns match ``readmodels.iceberg_sink.EVENTS_SCHEMA``.
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


EVENTS_TABLE_COLUMNS = """
  tenant_id STRING,
  `position` BIGINT,
  event_id STRING,
  event_type STRING,
  stream_type STRING,
  stream_id STRING,
  stream_version BIGINT,
  schema_version INT,
  occurred_at TIMESTAMP_LTZ(6),
  recorded_at TIMESTAMP_LTZ(6),
  transaction_id BIGINT,
  command_id STRING,
  correlation_id STRING,
  data STRING,
  metadata STRING
"""


def ddl_statements(args: Any, lake: bool) -> list[str]:
    out = [
        kafka_sink_ddl("serving_sink", f"{args.topic_prefix}.serving", args.bootstrap),
        kafka_sink_ddl("dead_letter_sink", f"{args.topic_prefix}.deadletter", args.bootstrap),
    ]
    if lake:
        out += [
            catalog_ddl(args),
            f"CREATE DATABASE IF NOT EXISTS {args.catalog_name}.{NAMESPACE}",
            f"CREATE TABLE IF NOT EXISTS {args.catalog_name}.{NAMESPACE}.events ({EVENTS_TABLE_COLUMNS})",
        ]
    return out


def insert_statements(args: Any, lake: bool) -> list[str]:
    out = [
        "INSERT INTO serving_sink SELECT k, v FROM serving_out",
        "INSERT INTO dead_letter_sink SELECT k, v FROM dead_letter_out",
    ]
    if lake:
        out.append(
            f"INSERT INTO {args.catalog_name}.{NAMESPACE}.events SELECT tenant_id, `position`, event_id, "
            "event_type, stream_type, stream_id, stream_version, schema_version, "
            "TO_TIMESTAMP_LTZ(occurred_ms, 3), TO_TIMESTAMP_LTZ(recorded_ms, 3), CAST(NULL AS BIGINT), "
            "command_id, correlation_id, data, metadata FROM lake_out"
        )
    return out

"""One Debezium connector config per legacy source, shared by the embedded engine and Kafka Connect.

Topics are ``<topic_prefix>.<source name>.<schema or database>.<table>``; every value is the plain
Debezium envelope ``{before, after, source, op, ts_ms, ts_us, ts_ns, transaction}`` (JSON, no schema
wrapper), keys are the primary-key columns (``{"id": 1}``). MySQL/MariaDB schema changes go to
``<topic_prefix>.<source name>`` (key ``{"databaseName": ...}``, value ``{source, ddl, tableChanges, ...}``)
and heartbeats to ``__debezium-heartbeat.<topic_prefix>.<source name>``. The initial snapshot of a
MySQL/MariaDB source also emits its bootstrap DDL there (``SET character_set_server...``, ``DROP TABLE IF
EXISTS``, ``CREATE DATABASE``, ``USE``, ``CREATE TABLE``; ``source.snapshot == "true"``): schema-change
records are not row changes (they have no ``op``). On Connect the MySQL/MariaDB schema history lives in
``<topic_prefix>.<source name>.schema-history`` (records without ``op`` either).

Value encodings the normalizer can rely on (the same in both deployments):

* ``DECIMAL``/``NUMERIC`` -> string ``"12.50"`` (``decimal.handling.mode=string``: exact, no base64 bytes);
* every date/time type -> ISO-8601 string (``time.precision.mode=isostring``). Zone-less types get a
  ``Z`` appended to their wall-clock value: Postgres ``date`` ``"2024-05-02Z"``, ``timestamp(3)`` and
  MariaDB ``DATETIME(3)`` ``"2024-05-01T12:00:00.123Z"``; ``timestamptz`` and MariaDB ``TIMESTAMP`` are
  UTC instants ``"2024-05-01T12:00:00.123456Z"``. The fraction's length varies (Postgres drops a zero
  fraction: ``"2024-05-01T12:05:00Z"``; MariaDB keeps the column's: ``".000000Z"``). Without schemas
  in the JSON, ``connect`` mode would give epoch millis (microseconds truncated) and the ``adaptive*``
  modes millis or micros depending on the column's precision, which a consumer cannot tell apart; ISO
  strings are unit-free and lossless.
* Postgres ``json``/``jsonb`` -> the JSON text as a string; binary columns -> base64 text.

Debezium's version is 3.5.0.Final in the embedded engine (deploy/maven/debezium-embedded) and
3.4.3 (Postgres) / 3.5.0 (MariaDB) on Connect; every key used here means the same in all of them.
"""

from __future__ import annotations

import psycopg

from connectors.legacy.declaration import SourceSpec, TableSpec
from connectors.replication_slots import drop_slot_and_publication as drop_replication

POSTGRES_CONNECTOR = "io.debezium.connector.postgresql.PostgresConnector"
MARIADB_CONNECTOR = "io.debezium.connector.mariadb.MariaDbConnector"
MYSQL_CONNECTOR = "io.debezium.connector.mysql.MySqlConnector"
CONNECTOR_CLASSES = {"postgres": POSTGRES_CONNECTOR, "mariadb": MARIADB_CONNECTOR, "mysql": MYSQL_CONNECTOR}
JSON_CONVERTER = "org.apache.kafka.connect.json.JsonConverter"
HEARTBEAT_PREFIX = "agentflow-heartbeat"
HEARTBEAT_TOPIC_PREFIX = "__debezium-heartbeat"
HEARTBEAT_QUERY = f"SELECT pg_logical_emit_message(false, '{HEARTBEAT_PREFIX}', now()::text)"


# Debezium snapshots tables in table.include.list order. Products before the inventory and orders
# that name them; payments before orders, so that when a snapshot order is placed its payments are
# waiting (connectors/legacy/ingest.py applies them at once) before it ships or is cancelled.
SNAPSHOT_ORDER = {"products": 0, "inventory": 1, "payments": 2, "orders": 3}


def snapshot_order(spec: SourceSpec) -> list[TableSpec]:
    return sorted(spec.tables, key=lambda t: SNAPSHOT_ORDER.get(t.translator, len(SNAPSHOT_ORDER)))


def slot_name(spec: SourceSpec) -> str:
    """Replication slot of a Postgres source (names are ``[a-z0-9_]``, as source names are)."""
    return f"agentflow_{spec.name}"


def publication_name(spec: SourceSpec) -> str:
    return f"agentflow_{spec.name}_pub"


def source_topic_prefix(spec: SourceSpec, topic_prefix: str) -> str:
    """Debezium's ``topic.prefix`` of a source: its data topics are ``<this>.<schema>.<table>``."""
    return f"{topic_prefix}.{spec.name}"


def changes_topic(spec: SourceSpec, topic_prefix: str) -> str:
    """Kafka Connect: the one topic (one partition) all of a source's tables and DDL are routed to,
    so the consumer sees them in the source's commit order across tables (a payment row after the
    order row it names). Per-table topics would lose that order."""
    return f"{source_topic_prefix(spec, topic_prefix)}.changes"


def heartbeat_topic(spec: SourceSpec, topic_prefix: str) -> str:
    return f"{HEARTBEAT_TOPIC_PREFIX}.{source_topic_prefix(spec, topic_prefix)}"


def file_schema_history(path: str) -> dict[str, str]:
    """MySQL/MariaDB schema history in a local file (embedded engine)."""
    return {
        "schema.history.internal": "io.debezium.storage.file.history.FileSchemaHistory",
        "schema.history.internal.file.filename": path,
    }


def kafka_schema_history(bootstrap_servers: str, topic: str) -> dict[str, str]:
    """MySQL/MariaDB schema history in a single-partition Kafka topic (Kafka Connect)."""
    return {
        "schema.history.internal": "io.debezium.storage.kafka.history.KafkaSchemaHistory",
        "schema.history.internal.kafka.bootstrap.servers": bootstrap_servers,
        "schema.history.internal.kafka.topic": topic,
    }


def _java_regex_literal(name: str) -> str:
    """``table.include.list`` entries are (anchored) Java regexes: quote ``.`` and ``$`` literally."""
    return "".join("\\" + c if c in ".$" else c for c in name)


def connector_config(
    spec: SourceSpec, *, topic_prefix: str, schema_history: dict[str, str]
) -> dict[str, str]:
    """The connector config (all values strings) capturing ``spec``'s tables.

    ``schema_history`` is used by MySQL/MariaDB only (see :func:`file_schema_history` and
    :func:`kafka_schema_history`); Postgres ignores it. The embedded engine adds its own
    offset-storage/engine keys; Kafka Connect takes the result as is.
    """
    conn = spec.connection
    cfg: dict[str, str] = {
        "connector.class": CONNECTOR_CLASSES[spec.kind],
        "tasks.max": "1",
        "topic.prefix": source_topic_prefix(spec, topic_prefix),
        "database.hostname": conn.host,
        "database.port": str(conn.port),
        "database.user": conn.user,
        "database.password": conn.password,
        "table.include.list": ",".join(_java_regex_literal(t.name) for t in snapshot_order(spec)),
        # existing rows first (op "r"), then the change stream from the position the snapshot was taken at
        "snapshot.mode": "initial",
        "decimal.handling.mode": "string",
        "time.precision.mode": "isostring",
        "tombstones.on.delete": "false",
        "key.converter": JSON_CONVERTER,
        "key.converter.schemas.enable": "false",
        "value.converter": JSON_CONVERTER,
        "value.converter.schemas.enable": "false",
        # latency over batching: the default 500 ms poll gives ~660 ms p50 capture latency, 10 ms ~10 ms
        "poll.interval.ms": "10",
        "max.batch.size": "2048",
        "max.queue.size": "8192",
        # an idle captured table must still move the stored position (WAL / binlog retention)
        "heartbeat.interval.ms": "10000",
        "topic.heartbeat.prefix": HEARTBEAT_TOPIC_PREFIX,
        "provide.transaction.metadata": "false",
        # binary columns as base64 text rather than JSON-encoded byte arrays
        "binary.handling.mode": "base64",
    }
    if spec.kind == "postgres":
        cfg.update({
            "database.dbname": conn.database,
            "database.sslmode": "disable" if conn.host in ("127.0.0.1", "localhost", "::1") else "prefer",
            "plugin.name": "pgoutput",
            "slot.name": slot_name(spec),
            "publication.name": publication_name(spec),
            # creates the publication for exactly the included tables when it is missing (needs table owner)
            "publication.autocreate.mode": "filtered",
            # An idle legacy database must not pin WAL: each heartbeat writes a non-transactional logical
            # message into the WAL; the connector receives it, moves its offset and confirms the LSN.
            "heartbeat.action.query": HEARTBEAT_QUERY,
            "message.prefix.exclude.list": HEARTBEAT_PREFIX,
            # full before images on UPDATE/DELETE (a DELETE otherwise carries only the key, so its tenant
            # column and amounts would be null). Set by the connector at start; needs the table owner.
            "replica.identity.autoset.values": ",".join(
                f"{_java_regex_literal(t.name)}:FULL" for t in spec.tables
            ),
            "include.schema.changes": "false",  # the Postgres connector has no schema-change events
            "skipped.operations": "t",  # TRUNCATE has no row images; translators cannot use it
        })
    else:
        databases = sorted({t.schema for t in spec.tables})
        cfg.update({
            "database.server.id": str(spec.server_id),
            "database.include.list": ",".join(_java_regex_literal(d) for d in databases),
            "include.schema.changes": "true",
            # No FLUSH TABLES WITH READ LOCK: on a live shop it waits behind any long query while blocking
            # every writer. Rows stay consistent through InnoDB's consistent-snapshot transaction; the
            # one risk is DDL on a captured table during the initial snapshot. Needs no RELOAD/LOCK grant.
            "snapshot.locking.mode": "none",
            "connect.timeout.ms": "10000",
            **schema_history,
        })
    return cfg


def drop_slot_and_publication(spec: SourceSpec, timeout: float = 30.0) -> None:
    """Drop a Postgres source's replication slot (once no walsender holds it) and its publication.

    For removing a source in either deployment: a slot left behind pins WAL on the legacy database forever.
    """
    c = spec.connection
    with psycopg.connect(
        host=c.host, port=c.port, dbname=c.database, user=c.user, password=c.password or None,
        autocommit=True, application_name="agentflow-legacy-cleanup", connect_timeout=10,
    ) as conn:
        drop_replication(conn, slot_name(spec), publication_name(spec), timeout)

"""Kafka Connect config for the Debezium Postgres connector capturing the event store (``public.events``).

The resulting topic ``<prefix>.events`` carries one message per event row, keyed by ``stream_id``
(plain string) with a schemaless JSON value::

    {"position": 7, "tenant_id": "t", "stream_type": "order", "stream_id": "ORD-1", "stream_version": 2,
     "event_id": "<uuid>", "event_type": "OrderConfirmed", "schema_version": 1,
     "data": "{\\"order_id\\": ...}", "metadata": "{...}",
     "occurred_at": "2024-05-01T12:00:01.000000Z", "recorded_at": "...Z",
     "__source_ts_ms": 1714564801000, "__lsn": 23456789}

jsonb columns arrive as JSON text strings and timestamptz as ISO-8601 strings (Debezium's ``Json`` and
``ZonedTimestamp``); ``transaction_id`` (xid8) is excluded. Rows present when the connector is first
registered are captured by the initial snapshot (``__source_ts_ms`` is then the snapshot time).
"""

from __future__ import annotations

from sqlalchemy.engine import make_url

CONNECTOR_CLASS = "io.debezium.connector.postgresql.PostgresConnector"
DEFAULT_SLOT = "agentflow_events_slot"
DEFAULT_PUBLICATION = "agentflow_events_pub"
HEARTBEAT_PREFIX = "agentflow-heartbeat"


def events_topic(topic_prefix: str = "agentflow") -> str:
    return f"{topic_prefix}.events"


def debezium_postgres_config(
    database_url: str,
    *,
    topic_prefix: str = "agentflow",
    slot_name: str = DEFAULT_SLOT,
    publication_name: str = DEFAULT_PUBLICATION,
    poll_interval_ms: int = 10,
    heartbeat_interval_ms: int = 5000,
    snapshot_mode: str = "initial",
    partitions: int = 3,
    replication_factor: int = 1,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """Connector config (all values strings, as the Connect REST API wants) for ``database_url``.

    ``database_url`` is any SQLAlchemy/libpq-style URL (``postgresql+psycopg://user:pw@host:port/db``);
    it must be reachable over TCP by the Connect worker and the user needs REPLICATION (or superuser).
    """
    url = make_url(database_url)
    table = "public.events"
    source_topic = rf"{_re_escape(topic_prefix)}\.public\.events"  # Debezium's <prefix>.<schema>.<table>
    cfg: dict[str, str] = {
        "connector.class": CONNECTOR_CLASS,
        "tasks.max": "1",
        "database.hostname": url.host or "127.0.0.1",
        "database.port": str(url.port or 5432),
        "database.user": url.username or "postgres",
        "database.password": url.password or "",
        "database.dbname": url.database or "postgres",
        "database.sslmode": str(url.query.get("sslmode", "disable")),
        "topic.prefix": topic_prefix,
        "plugin.name": "pgoutput",
        "slot.name": slot_name,
        "publication.name": publication_name,
        # creates the publication for exactly the included tables when it is missing
        "publication.autocreate.mode": "filtered",
        "table.include.list": table,
        "column.exclude.list": f"{table}.transaction_id",
        "snapshot.mode": snapshot_mode,
        "poll.interval.ms": str(poll_interval_ms),
        "max.batch.size": "2048",
        "max.queue.size": "8192",
        # An idle event store must not pin WAL: every heartbeat writes a (non-transactional) logical
        # decoding message into the WAL; the connector receives it, advances its offset and confirms
        # the LSN, so the slot moves on even when no event is appended.
        "heartbeat.interval.ms": str(heartbeat_interval_ms),
        "heartbeat.action.query": f"SELECT pg_logical_emit_message(false, '{HEARTBEAT_PREFIX}', now()::text)",
        "message.prefix.exclude.list": HEARTBEAT_PREFIX,
        "topic.heartbeat.prefix": "__debezium-heartbeat",
        "decimal.handling.mode": "string",
        "time.precision.mode": "adaptive_time_microseconds",
        "tombstones.on.delete": "false",
        "skipped.operations": "t",  # tests TRUNCATE the store; nothing downstream wants that
        "include.schema.changes": "false",
        "provide.transaction.metadata": "false",
        # new row state only, plus commit time and LSN as __source_ts_ms / __lsn
        "transforms": "unwrap,key,keyfield,route",
        "transforms.unwrap.type": "io.debezium.transforms.ExtractNewRecordState",
        "transforms.unwrap.add.fields": "source.ts_ms,lsn",
        "transforms.unwrap.delete.tombstone.handling.mode": "drop",
        # heartbeat records (topic __debezium-heartbeat.<prefix>) have no stream_id: key/route only events
        "predicates": "isEvents",
        "predicates.isEvents.type": "org.apache.kafka.connect.transforms.predicates.TopicNameMatches",
        "predicates.isEvents.pattern": source_topic,
        "transforms.key.type": "org.apache.kafka.connect.transforms.ValueToKey",
        "transforms.key.fields": "stream_id",
        "transforms.key.predicate": "isEvents",
        "transforms.keyfield.type": "org.apache.kafka.connect.transforms.ExtractField$Key",
        "transforms.keyfield.field": "stream_id",
        "transforms.keyfield.predicate": "isEvents",
        "transforms.route.type": "org.apache.kafka.connect.transforms.RegexRouter",
        "transforms.route.regex": source_topic,
        "transforms.route.predicate": "isEvents",
        "transforms.route.replacement": events_topic(topic_prefix),
        "key.converter": "org.apache.kafka.connect.storage.StringConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "false",
        "topic.creation.default.partitions": str(partitions),
        "topic.creation.default.replication.factor": str(replication_factor),
        "topic.creation.default.cleanup.policy": "delete",  # never compact: the key is the stream
        "producer.override.linger.ms": "0",
    }
    cfg.update(extra or {})
    return cfg


def _re_escape(s: str) -> str:
    """Java regex escaping for a topic prefix (letters, digits, '.', '_', '-')."""
    return "".join("\\" + c if c in ".-" else c for c in s)

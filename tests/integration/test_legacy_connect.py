"""Distributed legacy CDC: on a real Kafka Connect worker, ``register_source_connector`` captures a legacy
Postgres and a MariaDB into one ``<prefix>.<name>.changes`` topic each (snapshot, then streaming) with
the same envelope as the embedded engine; ``remove_source_connector`` deletes the connector, its offsets
and (Postgres) its slot and publication."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer, KafkaError
from distributed_stack import unique_prefix
from legacy_databases import LegacyDatabase

from connectors.legacy.connect_registration import (
    connector_name,
    register_source_connector,
    remove_source_connector,
    schema_history_topic,
)
from connectors.legacy.debezium_config import changes_topic, publication_name, slot_name
from connectors.legacy.declaration import SourceSpec, parse_source
from services.distributed.kafka_broker import KafkaBroker
from services.distributed.kafka_connect import KafkaConnect

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def _spec(db: LegacyDatabase, name: str) -> SourceSpec:
    return parse_source(db.declaration(name, "tenant-legacy", ("orders", "products")))


def _execute(db: LegacyDatabase, *statements: str) -> None:
    conn = db.admin_connect()
    try:
        with conn.cursor() as cur:
            for s in statements:
                cur.execute(s)
        conn.commit()
    finally:
        conn.close()


def _identity(v: dict[str, Any]) -> tuple[Any, ...]:
    """A change's place in the source log (duplicates share it)."""
    s = v["source"]
    where = (s["lsn"], s["txId"]) if s["connector"] == "postgresql" else (s["file"], s["pos"], s["row"])
    return (s["table"], v["op"], *where)


def _order_insert(order_id: int, status: str = "pending") -> str:
    return ("INSERT INTO orders (id, customer_id, product_id, quantity, unit_price_cents, currency, channel, "
            f"status, created_at, updated_at) VALUES ({order_id}, 7, 1, 2, 1250, 'EUR', 'web', '{status}', "
            "'2024-05-01 12:00:00.123456', '2024-05-01 12:00:00.123456')")


Message = tuple[str, Any, Any]


def _consume_until(
    broker: KafkaBroker, topics: list[str], done: Callable[[list[Message]], bool], timeout: float
) -> list[Message]:
    """(topic, key, value) of the messages on ``topics`` from the start until ``done`` says so."""
    c = Consumer({
        "bootstrap.servers": broker.bootstrap_servers, "group.id": f"test-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest", "enable.auto.commit": False, "fetch.wait.max.ms": 10,
        "topic.metadata.refresh.interval.ms": 500,
    })
    out: list[tuple[str, Any, Any]] = []
    try:
        c.subscribe(topics)
        deadline = time.monotonic() + timeout
        while not done(out):
            assert time.monotonic() < deadline, f"not done within {timeout}s: {out}"
            m = c.poll(0.1)
            if m is None:
                continue
            err = m.error()
            if err is not None:
                if err.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._PARTITION_EOF):
                    continue
                raise AssertionError(str(err))
            key, value = m.key(), m.value()
            out.append((str(m.topic()), json.loads(key) if key else None,
                        json.loads(value) if value else None))
    finally:
        c.close()
    return out


@pytest.mark.parametrize("kind", ["postgres", "mariadb"])
def test_connector_captures_snapshot_then_changes(
    request: pytest.FixtureRequest, kafka_broker: KafkaBroker, kafka_connect: KafkaConnect,
    kind: str,
) -> None:
    db: LegacyDatabase = request.getfixturevalue(f"legacy_{kind}")
    db.reset()
    spec = _spec(db, f"con_{kind[:5]}")
    prefix = unique_prefix("lg")
    _execute(db,
             "INSERT INTO products (id, sku, name, category, price_cents, currency, updated_at) "
             "VALUES (1, 'SKU-1', 'Kettle', 'kitchen', 1250, 'EUR', '2024-05-01 11:00:00')",
             _order_insert(100, "confirmed"))
    try:  # registered inside the try: a registration that fails half-way is removed too
        name = register_source_connector(kafka_connect.url, spec, topic_prefix=prefix,
                                         bootstrap=kafka_broker.bootstrap_servers)
        assert name == connector_name(spec) == f"legacy-con_{kind[:5]}"
        topic = changes_topic(spec, prefix)  # every table (and DDL) in one topic, in commit order

        def rows(out: list[Message]) -> set[tuple[str, str, int]]:
            return {(v["source"]["table"], v["op"], v["after"]["id"]) for _, _, v in out if "op" in v}

        # at-least-once: a task restart (e.g. a worker rebalance) may deliver a record twice
        want = {("orders", "r", 100), ("products", "r", 1)}
        snap = _consume_until(kafka_broker, [topic], lambda out: rows(out) >= want, 120)
        assert rows(snap) == want
        # the snapshot follows debezium_sources.SNAPSHOT_ORDER: products before the orders naming them
        tables = [v["source"]["table"] for _, _, v in snap if "op" in v]
        assert tables.index("products") < tables.index("orders")
        _, key, value = next(m for m in snap if "op" in m[2] and m[2]["source"]["table"] == "orders")
        assert key == {"id": 100}
        assert set(value) >= {"before", "after", "source", "op", "ts_ms", "transaction"}
        assert value["after"]["created_at"].startswith("2024-05-01T12:00:00.123456")

        _execute(db, _order_insert(101))
        _execute(db, "UPDATE orders SET status = 'shipped' WHERE id = 100")
        _execute(db, "DELETE FROM orders WHERE id = 101")
        msgs = _consume_until(kafka_broker, [topic],
                              lambda out: any(v.get("op") == "d" for _, _, v in out), 120)
        streamed = list({_identity(v): v for _, _, v in msgs if v.get("op") not in (None, "r")}.values())
        assert [(v["op"], (v["after"] or v["before"])["id"]) for v in streamed] == [("c", 101), ("u", 100),
                                                                                      ("d", 101)]
        upd, dele = streamed[1], streamed[2]
        assert upd["before"]["status"] == "confirmed" and upd["after"]["status"] == "shipped"
        assert dele["after"] is None and dele["before"]["customer_id"] == 7
        src = dele["source"]
        if kind == "postgres":
            assert isinstance(src["lsn"], int) and isinstance(src["txId"], int)
        else:
            assert src["file"].startswith("binlog.") and src["pos"] > 0 and src["gtid"]
            _execute(db, "ALTER TABLE orders ADD COLUMN note VARCHAR(40) NULL")
            ddl = _consume_until(
                kafka_broker, [topic],
                lambda out: any("ADD COLUMN note" in v.get("ddl", "") for _, _, v in out), 120,
            )
            _, key, alter = ddl[-1]
            assert key == {"databaseName": "shop"} and alter["tableChanges"][0]["type"] == "ALTER"
    finally:
        existed = remove_source_connector(kafka_connect.url, spec)  # history topic: from the config
    assert existed and connector_name(spec) not in kafka_connect.connectors()
    if kind == "postgres":
        with psycopg.connect(host=db.host, port=db.port, dbname=db.database, user=db.user,
                             password=db.password, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s",
                                (slot_name(spec),)).fetchone() == (0,)
            assert conn.execute("SELECT count(*) FROM pg_publication WHERE pubname = %s",
                                (publication_name(spec),)).fetchone() == (0,)
    else:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap_servers})
        topics = admin.list_topics(timeout=10).topics
        assert schema_history_topic(spec, prefix) not in topics

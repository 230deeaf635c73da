"""Register and remove legacy-source connectors on a Kafka Connect cluster (the distributed deployment).

Each source becomes connector ``legacy-<name>`` running the same Debezium config as the embedded engine
(:func:`connectors.legacy.debezium_config.connector_config`), writing ``<prefix>.<name>.<schema>.<table>``
topics; MySQL/MariaDB keep their schema history in the single-partition topic
``<prefix>.<name>.schema-history``. Only the Connect REST API is used (no local worker object), so this
works against any Connect cluster that has the Debezium plugins (deploy/maven/debezium-postgres and
deploy/maven/debezium-mariadb).

Removing a source deletes the connector *and* what would make a later re-registration wrong: its
Connect offsets (otherwise a new connector of the same name resumes from an old position and skips
both the snapshot and every change in between), for Postgres its replication slot (a slot left behind
pins WAL on the legacy database forever) and publication, and, when the Kafka bootstrap is given, the
MySQL/MariaDB schema-history topic. The data topics stay: consumers may still be reading them.
"""

from __future__ import annotations

import re
import time
from typing import Any

import httpx

from connectors.legacy.debezium_config import (
    changes_topic,
    connector_config,
    drop_slot_and_publication,
    kafka_schema_history,
    source_topic_prefix,
)
from connectors.legacy.declaration import SourceSpec


class ConnectSourceError(RuntimeError):
    pass


def connector_name(spec: SourceSpec) -> str:
    return f"legacy-{spec.name}"


def schema_history_topic(spec: SourceSpec, topic_prefix: str) -> str:
    return f"{topic_prefix}.{spec.name}.schema-history"


def source_connector_config(spec: SourceSpec, *, topic_prefix: str, bootstrap: str) -> dict[str, str]:
    """The shared Debezium config plus what only Connect needs (topic auto-creation, producer latency)."""
    cfg = connector_config(
        spec, topic_prefix=topic_prefix,
        schema_history=kafka_schema_history(bootstrap, schema_history_topic(spec, topic_prefix)),
    )
    prefix = source_topic_prefix(spec, topic_prefix)
    cfg.update({
        # every table's changes (and MySQL/MariaDB DDL) into one topic: the source's commit order
        "transforms": "route",
        "transforms.route.type": "org.apache.kafka.connect.transforms.RegexRouter",
        "transforms.route.regex": "^" + re.escape(prefix) + r"(\..+)?$",
        "transforms.route.replacement": changes_topic(spec, topic_prefix),
        # one partition: the source's changes stay in commit order across all its rows and tables
        "topic.creation.default.partitions": "1",
        "topic.creation.default.replication.factor": "-1",  # the broker's default
        "topic.creation.default.cleanup.policy": "delete",
        "producer.override.linger.ms": "0",
    })
    return cfg


def _check(r: httpx.Response) -> Any:
    if r.status_code >= 400:
        raise ConnectSourceError(f"{r.request.method} {r.request.url} -> {r.status_code}: {r.text}")
    return r.json() if r.content else None


def _status(client: httpx.Client, base: str, name: str) -> dict[str, Any] | None:
    r = client.get(f"{base}/connectors/{name}/status")
    if r.status_code == 404:
        return None
    return dict(_check(r))


def _wait_state(client: httpx.Client, base: str, name: str, want: str, timeout: float) -> dict[str, Any]:
    """Wait until the connector (and, for RUNNING, all its tasks) is in ``want``; raise on FAILED."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] | None = None
    while True:
        last = _status(client, base, name)
        if last is not None:
            tasks = [t["state"] for t in last.get("tasks", [])]
            if "FAILED" in (last["connector"]["state"], *tasks):
                trace = next((t.get("trace") for t in last.get("tasks", []) if t.get("trace")), None)
                raise ConnectSourceError(f"connector {name} failed: {trace or last}")
            if last["connector"]["state"] == want and (want != "RUNNING" or (tasks and set(tasks) == {want})):
                return last
        if time.monotonic() > deadline:
            raise TimeoutError(f"connector {name} not {want} within {timeout}s: {last}")
        time.sleep(0.2)


def register_source_connector(
    connect_url: str, spec: SourceSpec, *, topic_prefix: str, bootstrap: str, timeout: float = 120.0
) -> str:
    """Create or update connector ``legacy-<name>`` for ``spec`` and wait until its task runs.

    ``bootstrap`` is the Kafka bootstrap the *worker* reaches (MySQL/MariaDB schema history).
    Returns the connector name.
    """
    name = connector_name(spec)
    base = connect_url.rstrip("/")
    config = source_connector_config(spec, topic_prefix=topic_prefix, bootstrap=bootstrap)
    with httpx.Client(timeout=120.0) as client:
        _check(client.put(f"{base}/connectors/{name}/config", json=config))
        _wait_state(client, base, name, "RUNNING", timeout)
    return name


def remove_source_connector(
    connect_url: str,
    spec: SourceSpec,
    *,
    topic_prefix: str | None = None,
    bootstrap: str | None = None,
    timeout: float = 60.0,
) -> bool:
    """Stop the connector, reset its offsets, delete it; drop a Postgres source's slot and publication
    and a MySQL/MariaDB source's schema-history topic.

    The history topic and its bootstrap are read from the connector's config; ``topic_prefix`` and
    ``bootstrap`` name them when the connector is already gone (or the worker's bootstrap address is
    not reachable from here). Returns False when the connector did not exist (the cleanup runs anyway).
    """
    name = connector_name(spec)
    base = connect_url.rstrip("/")
    history: str | None = schema_history_topic(spec, topic_prefix) if topic_prefix is not None else None
    existed = False
    with httpx.Client(timeout=60.0) as client:
        if _status(client, base, name) is not None:
            existed = True
            config = dict(_check(client.get(f"{base}/connectors/{name}/config")))
            history = history or config.get("schema.history.internal.kafka.topic")
            bootstrap = bootstrap or config.get("schema.history.internal.kafka.bootstrap.servers")
            # offsets can only be reset on a STOPPED connector (KIP-875, Connect >= 3.6)
            _check(client.put(f"{base}/connectors/{name}/stop"))
            _wait_state(client, base, name, "STOPPED", timeout)
            _check(client.delete(f"{base}/connectors/{name}/offsets"))
            _check(client.delete(f"{base}/connectors/{name}"))
            deadline = time.monotonic() + timeout
            while name in _check(client.get(f"{base}/connectors")):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"connector {name} still listed after {timeout}s")
                time.sleep(0.2)
    if spec.kind == "postgres":
        drop_slot_and_publication(spec, timeout=timeout)
    elif history is not None and bootstrap is not None:
        _delete_topic(bootstrap, history)
    return existed


def _delete_topic(bootstrap: str, topic: str, timeout: float = 30.0) -> None:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.delete_topics([topic], operation_timeout=timeout)
    try:
        futures[topic].result(timeout)
    except KafkaException as e:
        if "UNKNOWN_TOPIC" not in str(e):
            raise

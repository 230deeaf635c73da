"""Session fixtures for the distributed engines: a KRaft Kafka broker and a Kafka Connect worker with the
Debezium Postgres plugin, both real JVMs on 127.0.0.1 free ports, logs under pytest's tmp dir.

tests/conftest.py registers these fixtures for the whole session (one broker, one worker); capture a
test database with :func:`event_capture`. Every capture needs its own connector name and topic prefix
within a session (Connect keeps a deleted connector's offsets; the topics outlive it). The fixtures fail
(never skip) when java or, on a cold cache, mvn is missing.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from connectors import jars
from connectors.debezium_config import DEFAULT_PUBLICATION, DEFAULT_SLOT
from services.distributed.cdc import start_event_capture, stop_event_capture
from services.distributed.kafka_broker import KafkaBroker
from services.distributed.kafka_connect import KafkaConnect


def _require_jvm_stack(*bundles: str) -> None:
    if shutil.which("java") is None:
        pytest.fail("java is not installed (needed for Kafka / Kafka Connect; make setup-distributed)")
    if shutil.which("mvn") is None and not all(jars.is_fetched(b) for b in bundles):
        pytest.fail("mvn is not installed and the jar cache is cold (make setup-distributed)")


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    _require_jvm_stack("kafka")
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_connect(
    kafka_broker: KafkaBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KafkaConnect]:
    _require_jvm_stack("connect", "debezium-postgres")
    worker = KafkaConnect(Path(tmp_path_factory.mktemp("connect")), kafka_broker.bootstrap_servers)
    try:
        worker.start()
        yield worker
    finally:
        worker.stop()


def unique_prefix(base: str = "t") -> str:
    """A topic prefix / connector name unique within the session (letters, digits, '_')."""
    return f"{base}_{uuid.uuid4().hex[:10]}"


@contextmanager
def event_capture(
    connect: KafkaConnect, database_url: str, topic_prefix: str | None = None, **config_kw: object
) -> Iterator[str]:
    """Capture ``database_url``'s event store into ``<prefix>.events`` while the block runs; yields the
    topic. On exit the connector is deleted and its slot and publication dropped (even on failure)."""
    prefix = topic_prefix or unique_prefix()
    name = f"events-{prefix}"
    slot = str(config_kw.get("slot_name", DEFAULT_SLOT))
    publication = str(config_kw.get("publication_name", DEFAULT_PUBLICATION))
    try:
        start_event_capture(connect, database_url, name, topic_prefix=prefix, **config_kw)
        yield f"{prefix}.events"
    finally:
        stop_event_capture(connect, database_url, name, slot_name=slot, publication_name=publication)

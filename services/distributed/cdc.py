"""Start and stop capture of the event store into Kafka through a Connect worker running Debezium.

Stopping with ``drop_slot=True`` deletes the connector, then drops its replication slot and
publication: a slot left behind pins WAL forever. Connect keeps a deleted connector's source offsets
under its name, so re-creating a connector with the SAME name resumes from the old LSN and skips the
snapshot; use a new name (or keep the slot) deliberately.
"""

from __future__ import annotations

from connectors.database import connect_raw
from connectors.debezium_config import DEFAULT_PUBLICATION, DEFAULT_SLOT, debezium_postgres_config
from connectors.replication_slots import drop_slot_and_publication as drop_replication
from services.distributed.kafka_connect import KafkaConnect


def start_event_capture(
    connect: KafkaConnect,
    database_url: str,
    name: str = "agentflow-events",
    timeout: float = 120.0,
    **config_kw: object,
) -> dict[str, str]:
    """Register (or update) the Debezium connector for ``database_url`` and wait until it runs.

    ``config_kw`` goes to :func:`connectors.debezium_config.debezium_postgres_config`. Returns the config.
    """
    config = debezium_postgres_config(database_url, **config_kw)  # type: ignore[arg-type]
    connect.put_connector(name, config)
    connect.wait_running(name, timeout)
    return config


def drop_slot_and_publication(
    database_url: str,
    slot_name: str = DEFAULT_SLOT,
    publication_name: str = DEFAULT_PUBLICATION,
    timeout: float = 30.0,
) -> None:
    """Drop the event store capture's (inactive) slot and its publication."""
    with connect_raw(database_url) as conn:
        drop_replication(conn, slot_name, publication_name, timeout)


def stop_event_capture(
    connect: KafkaConnect,
    database_url: str,
    name: str = "agentflow-events",
    *,
    drop_slot: bool = True,
    slot_name: str = DEFAULT_SLOT,
    publication_name: str = DEFAULT_PUBLICATION,
) -> None:
    """Delete the connector (if present); with ``drop_slot`` also drop its slot and publication."""
    if connect.is_running() and connect.delete_connector(name):
        connect.wait_deleted(name)
    if drop_slot:
        drop_slot_and_publication(database_url, slot_name, publication_name)


def register_connector(connect_url: str, name: str, database_url: str, **config_kw: object) -> None:
    """Create or update the connector on an existing Connect cluster (no local worker involved)."""
    import httpx

    config = debezium_postgres_config(database_url, **config_kw)  # type: ignore[arg-type]
    r = httpx.put(f"{connect_url.rstrip('/')}/connectors/{name}/config", json=config, timeout=120.0)
    if r.status_code >= 400:
        raise RuntimeError(f"registering connector {name} at {connect_url} failed: {r.status_code} {r.text}")

"""The canonical CDC contract: one versioned record for every Debezium change, whatever the database.

Debezium's Postgres and MySQL/MariaDB envelopes differ in their source block (LSN and transaction id
versus binlog file, offset and row) and in how schema changes arrive. ``normalize`` turns either into
a ``CanonicalRecord``; translators never see a Debezium envelope.

The record id is derived from the source position only (uuid5), so a re-delivered change gets the
same id, and the events translated from it get the same ids and idempotency keys: re-delivery never
duplicates. Snapshot rows have no position of their own (every row shares the snapshot's LSN or
binlog offset), so theirs is derived from the table, primary key and row image instead.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from connectors.legacy.declaration import SourceSpec, TableSpec

CONTRACT_VERSION = 1
NAMESPACE = uuid.UUID("5c0f6a8e-2b1d-4e8a-9a57-0a9f3c1e7d11")

SNAPSHOT, INSERT, UPDATE, DELETE, SCHEMA_CHANGE, TRUNCATE = (
    "snapshot", "insert", "update", "delete", "schema_change", "truncate",
)
_OPS = {"r": SNAPSHOT, "c": INSERT, "u": UPDATE, "d": DELETE, "t": TRUNCATE}


class NormalizeError(ValueError):
    """The message is not a change record we can read (it goes to the dead letters as ``cdc_normalize``)."""


class UnknownSource(LookupError):
    """A change from a database or table no declared source captures: fail loudly, never guess a tenant."""


@dataclass(frozen=True)
class SourceRef:
    source: str  # the declared source's name
    connector: str  # postgresql | mysql | mariadb
    database: str
    schema: str  # Postgres schema; the database again for MySQL/MariaDB
    table: str


@dataclass(frozen=True)
class CanonicalRecord:
    record_id: str
    operation: str  # snapshot | insert | update | delete | schema_change | truncate
    source: SourceRef
    entity_type: str  # the translator: orders | payments | products | inventory ('' for schema changes)
    entity_id: str  # the legacy primary key, as text
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    position: dict[str, Any]  # lsn/tx_id (Postgres) or file/pos/row/gtid (MySQL/MariaDB)
    commit_ts_ms: int | None
    tenant: str | None  # None only when the tenant column's value is not mapped
    ddl: str | None = None
    contract_version: int = CONTRACT_VERSION

    @property
    def row(self) -> dict[str, Any] | None:
        """The latest image: ``after``, or ``before`` for a delete."""
        return self.after if self.after is not None else self.before

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> CanonicalRecord:
        data = dict(raw)
        data["source"] = SourceRef(**data["source"])
        return cls(**data)

    def position_text(self) -> str:
        """A short human-readable source position for status output."""
        p = self.position
        if "lsn" in p:
            return f"lsn {p['lsn']}"
        if "file" in p:
            return f"{p['file']}:{p.get('pos')}" + (f" row {p['row']}" if p.get("row") else "")
        return "snapshot"


def _primary_key(key: dict[str, Any] | None, row: dict[str, Any] | None, table: TableSpec) -> str:
    id_column = table.columns.get("id", "product_id" if table.translator == "inventory" else "id")
    if key:
        values = [str(v) for v in key.values()]
        return values[0] if len(values) == 1 else ":".join(values)
    if row is not None and id_column in row:
        return str(row[id_column])
    raise NormalizeError(f"{table.name}: no primary key in the change and no {id_column!r} column")


def _position(src: dict[str, Any], connector: str) -> dict[str, Any]:
    if connector == "postgresql":
        return {"lsn": src.get("lsn"), "tx_id": src.get("txId")}
    return {"file": src.get("file"), "pos": src.get("pos"), "row": src.get("row", 0), "gtid": src.get("gtid"),
            "server_id": src.get("server_id")}


def _record_id(
    spec: SourceSpec, op: str, table: str, pk: str, position: dict[str, Any], row: dict[str, Any] | None
) -> str:
    if op == SNAPSHOT:
        # a re-snapshot of an unchanged row is the same record; a changed row is a new one
        image = json.dumps(row, sort_keys=True, default=str, separators=(",", ":"))
        seed = f"{spec.name}|snapshot|{table}|{pk}|{hashlib.sha256(image.encode()).hexdigest()}"
    elif "lsn" in position:
        # each row change has its own WAL record, hence its own LSN
        seed = f"{spec.name}|{op}|{table}|{pk}|lsn={position['lsn']}"
    else:
        # one binlog rows-event holds several rows: file + offset + row index is unique
        seed = f"{spec.name}|{op}|{table}|{pk}|{position['file']}:{position['pos']}:{position['row']}"
    return str(uuid.uuid5(NAMESPACE, seed))


def normalize(
    spec: SourceSpec, value: dict[str, Any] | None, key: dict[str, Any] | None = None
) -> CanonicalRecord | None:
    """One Debezium envelope (JSON, schemas disabled) -> a canonical record.

    Returns None for tombstones and heartbeats. Raises UnknownSource for a table the source does not
    declare, NormalizeError for a record that is not a Debezium change.
    """
    if value is None:
        return None
    if "payload" in value and "schema" in value:  # a converter with schemas enabled
        value = value["payload"]
        if value is None:
            return None
    if not isinstance(value, dict):
        raise NormalizeError("the change value is not a JSON object")
    src = value.get("source")
    if not isinstance(src, dict):
        if "ts_ms" in value and len(value) == 1:  # a Debezium heartbeat
            return None
        raise NormalizeError("no Debezium source block")
    connector = str(src.get("connector", ""))
    if connector != spec.connector:
        raise UnknownSource(f"source {spec.name} is {spec.connector} but the change came from {connector!r}")
    if "ddl" in value or "tableChanges" in value:
        # MySQL/MariaDB DDL (no op). The first snapshot also replays bootstrap statements (SET ...,
        # CREATE DATABASE, USE) with no database or another one: not changes of this source's tables.
        ddl_db = str(value.get("databaseName") or src.get("db") or "")
        if ddl_db != spec.connection.database:
            return None
        return _schema_change(spec, value, src, connector, ddl_db)
    database = str(src.get("db", ""))
    if database != spec.connection.database:
        raise UnknownSource(f"source {spec.name} captures database {spec.connection.database}, "
                            f"not {database!r}")
    op_code = value.get("op")
    if op_code == "m":  # a logical decoding message (our heartbeat action)
        return None
    if op_code not in _OPS:
        raise NormalizeError(f"unknown Debezium op {op_code!r}")
    schema = str(src.get("schema") or database) if connector == "postgresql" else database
    table_name = str(src.get("table", ""))
    table = spec.table(schema, table_name)
    if table is None:
        raise UnknownSource(f"source {spec.name} declares no table {schema}.{table_name}")
    op = _OPS[op_code]
    before = value.get("before")
    after = value.get("after")
    if op == DELETE and before is None:
        raise NormalizeError(f"{table.name}: delete without a before image (set REPLICA IDENTITY FULL)")
    if op in (SNAPSHOT, INSERT, UPDATE) and after is None:
        raise NormalizeError(f"{table.name}: {op} without an after image")
    position = _position(src, connector)
    pk = _primary_key(key, after if after is not None else before, table) if op != TRUNCATE else ""
    return CanonicalRecord(
        record_id=_record_id(spec, op, table.name, pk, position, after),
        operation=op,
        source=SourceRef(spec.name, connector, database, schema, table_name),
        entity_type=table.translator,
        entity_id=pk,
        before=before,
        after=after,
        position=position,
        commit_ts_ms=src.get("ts_ms"),
        tenant=spec.resolve_tenant(after if after is not None else before),
    )


def _schema_change(
    spec: SourceSpec, value: dict[str, Any], src: dict[str, Any], connector: str, database: str
) -> CanonicalRecord:
    position = _position(src, connector)
    table = str(src.get("table") or "")
    seed = f"{spec.name}|ddl|{position.get('file')}:{position.get('pos')}|{value.get('ddl', '')}"
    return CanonicalRecord(
        record_id=str(uuid.uuid5(NAMESPACE, seed)),
        operation=SCHEMA_CHANGE,
        source=SourceRef(spec.name, connector, database, database, table),
        entity_type="",
        entity_id="",
        before=None,
        after=None,
        position=position,
        commit_ts_ms=src.get("ts_ms"),
        tenant=spec.tenant,
        ddl=str(value.get("ddl") or ""),
    )

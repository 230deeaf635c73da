"""ClickHouse read-model store over clickhouse-connect: ``chdb://<path>`` embedded or ``http(s)://`` server.

Tables are ReplacingMergeTree(version) ordered by (tenant_id, key...) and read with FINAL.
Writes are SQL ``INSERT ... FORMAT JSONEachRow`` through ``client.command`` (on chdb ~5 ms, while
``client.insert`` costs 40-80 ms per call), one INSERT per table per batch.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

import clickhouse_connect
import msgspec

from projections.rows import KEY_COLUMNS, TABLES, Key, Row

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


def _fmt_ts(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not None and value.utcoffset():
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(" ", "milliseconds")


def _aware(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _trunc_ms(value: datetime) -> datetime:
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


# small inserts: one thread parses and writes the part (on chdb ~35% faster than the default
# pipeline of parser/writer threads, and far steadier when the cores are busy)
_INSERT_SETTINGS = "SETTINGS max_threads = 1, max_insert_threads = 1, input_format_parallel_parsing = 0"
_json_encode = msgspec.json.Encoder().encode
_json_encode_sorted = msgspec.json.Encoder(order="sorted").encode

_LOCKS: dict[str, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock_for(dsn: str) -> threading.RLock:
    """chdb is one engine per process and not known to be thread-safe: one lock per DSN."""
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(dsn, threading.RLock())


class ClickHouseStore:
    def __init__(self, dsn: str, database: str = "agentflow") -> None:
        if not database.replace("_", "").isalnum():
            raise ValueError(f"bad database name {database!r}")
        self.dsn = dsn
        self.database = database
        self.embedded = dsn.startswith("chdb:")
        self._lock = _lock_for(dsn if self.embedded else f"{dsn}#{id(self)}")
        if self.embedded:
            self.client = clickhouse_connect.get_client(dsn=dsn)
        else:
            u = urlparse(dsn)
            self.client = clickhouse_connect.get_client(
                host=u.hostname or "localhost",
                port=u.port or 8123,
                username=u.username or "default",
                password=u.password or "",
                secure=u.scheme == "https",
            )
        self.column_types = {t: {c: ty for c, ty in self.columns(t)} for t in TABLES}
        self._plain = {
            t: [c for c, ty in self.columns(t) if "DateTime64" not in ty and (t, c) not in JSON_COLUMNS]
            for t in TABLES
        }
        self._times = {t: [c for c, ty in self.columns(t) if "DateTime64" in ty] for t in TABLES}
        self.ensure_schema()

    # --- schema -----------------------------------------------------------------------------

    @staticmethod
    def columns(table: str) -> list[tuple[str, str]]:
        return [("tenant_id", "String"), *COLUMNS[table], ("version", "UInt64")]

    def t(self, table: str) -> str:
        return f"{self.database}.{table}"

    def ensure_schema(self) -> None:
        with self._lock:
            self.client.command(f"CREATE DATABASE IF NOT EXISTS {self.database}")
            for table in TABLES:
                cols = [f"{c} {ty}" for c, ty in self.columns(table)] + INDEXES.get(table, [])
                order_by = ", ".join(("tenant_id", *KEY_COLUMNS[table]))
                self.client.command(
                    f"CREATE TABLE IF NOT EXISTS {self.t(table)} ({', '.join(cols)}) "
                    f"ENGINE = ReplacingMergeTree(version) ORDER BY ({order_by})"
                )

    def drop_all(self) -> None:
        with self._lock:
            self.client.command(f"DROP DATABASE IF EXISTS {self.database}")

    # --- writes -----------------------------------------------------------------------------

    def _encode(self, table: str, row: Row) -> dict[str, Any]:
        out = {c: row.get(c) for c in self._plain[table]}
        for c in self._times[table]:
            out[c] = _fmt_ts(row.get(c))
        for t, c in JSON_COLUMNS:
            if t == table:
                out[c] = _json_encode_sorted(row.get(c)).decode()
        return out

    def insert_rows(self, table: str, rows: Sequence[Row]) -> None:
        """One INSERT for all rows (JSONEachRow inline data; no user text reaches the SQL part)."""
        if not rows:
            return
        cols = ", ".join(self.column_types[table])
        body = b"\n".join(_json_encode(self._encode(table, r)) for r in rows).decode()
        with self._lock:
            self.client.command(
                f"INSERT INTO {self.t(table)} ({cols}) {_INSERT_SETTINGS} FORMAT JSONEachRow\n{body}"
            )

    # --- reads ------------------------------------------------------------------------------

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run a SELECT; ``{db}`` in the SQL is replaced by the database name (never user input)."""
        with self._lock:
            result = self.client.query(sql.replace("{db}", self.database), parameters=parameters or {})
            return [{k: _aware(v) for k, v in r.items()} for r in result.named_results()]

    def _decode(self, table: str, row: dict[str, Any]) -> Row:
        for t, col in JSON_COLUMNS:
            if t == table:
                row[col] = json.loads(row[col])
        return row

    def get_rows(self, table: str, keys: Iterable[Key]) -> dict[Key, Row]:
        """Point reads (FINAL) of keys (tenant_id, id, ...); grouped by tenant and first key column."""
        by_tenant: dict[str, set[Any]] = {}
        wanted = set()
        for key in keys:
            by_tenant.setdefault(key[0], set()).add(key[1])
            wanted.add(tuple(key))
        kcols = KEY_COLUMNS[table]
        first_type = self.column_types[table][kcols[0]]
        out: dict[Key, Row] = {}
        for tenant, ids in by_tenant.items():
            rows = self.query(
                f"SELECT * FROM {{db}}.{table} FINAL WHERE tenant_id = {{t:String}} "
                f"AND {kcols[0]} IN {{ids:Array({first_type})}}",
                {"t": tenant, "ids": sorted(ids)},
            )
            for r in rows:
                key = (r["tenant_id"], *(r[c] for c in kcols))
                if key in wanted:
                    out[key] = self._decode(table, r)
        return out

    def get_row(self, table: str, key: Key) -> Row | None:
        return self.get_rows(table, [key]).get(tuple(key))

    def select_rows(
        self,
        table: str,
        tenant_id: str,
        where: str = "",
        parameters: dict[str, Any] | None = None,
        order_by: str = "",
    ) -> list[Row]:
        """Rows of one tenant (FINAL); ``where``/``order_by`` are code-supplied SQL with bound parameters."""
        sql = f"SELECT * FROM {{db}}.{table} FINAL WHERE tenant_id = {{t:String}}"
        if where:
            sql += f" AND ({where})"
        if order_by:
            sql += f" ORDER BY {order_by}"
        return [self._decode(table, r) for r in self.query(sql, {"t": tenant_id, **(parameters or {})})]

    def close(self) -> None:
        with self._lock:
            self.client.close()


def ms(value: datetime) -> int:
    """Epoch milliseconds, for binding as ``fromUnixTimestamp64Milli({x:Int64}, 'UTC')``."""
    return int(_aware(value).timestamp() * 1000)


def normalize_row(table: str, row: Row) -> Row:
    """A projected row as it reads back from ClickHouse (ms timestamps, tz-aware UTC)."""
    out = dict(row)
    for col, ty in ClickHouseStore.columns(table):
        v = out.get(col)
        if "DateTime64" in ty and isinstance(v, datetime):
            out[col] = _trunc_ms(_aware(v).astimezone(UTC))
    return out

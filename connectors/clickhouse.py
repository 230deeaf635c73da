"""ClickHouse read-model store over clickhouse-connect: ``chdb://<path>`` embedded or ``http(s)://`` server.

Tables are ReplacingMergeTree(version) ordered by (tenant_id, key...) and read with FINAL.
Writes are SQL ``INSERT ... FORMAT JSONEachRow`` through ``client.command`` (on chdb ~5 ms, while
``client.insert`` costs 40-80 ms per call), one INSERT per table per batch.

Every call on the engine holds the store's lock: chdb is one engine per process and not known to be
thread-safe. A store made from a DSN owns its client and lock; whoever owns a chdb path makes that one
store (the composition root; in tests, tests/chdb_store.py) and every other store on the path comes from
it (``on_database``, ``scratch``), sharing them.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

import clickhouse_connect
import msgspec

from projections.rows import KEY_COLUMNS, TABLES, Key, Row
from readmodels.schema import INDEXES, JSON_COLUMNS, columns

log = logging.getLogger(__name__)


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


def _check_database(database: str) -> str:
    if not database.replace("_", "").isalnum():
        raise ValueError(f"bad database name {database!r}")
    return database


class ClickHouseStore:
    def __init__(self, dsn: str, database: str = "agentflow") -> None:
        """The store that owns the engine at ``dsn`` (see the module docstring); ensures its schema."""
        self.dsn = dsn
        self.database = _check_database(database)
        self.embedded = dsn.startswith("chdb:")
        self._lock = threading.RLock()
        self._owner = True
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
        self._swept = False
        self.ensure_schema()

    # --- schema -----------------------------------------------------------------------------

    @staticmethod
    def columns(table: str) -> list[tuple[str, str]]:
        return columns(table)

    def t(self, table: str) -> str:
        return f"{self.database}.{table}"

    def _create_table(self, table: str) -> str:
        cols = [f"{c} {ty}" for c, ty in self.columns(table)] + INDEXES.get(table, [])
        order_by = ", ".join(("tenant_id", *KEY_COLUMNS[table]))
        return (
            f"CREATE TABLE IF NOT EXISTS {self.t(table)} ({', '.join(cols)}) "
            f"ENGINE = ReplacingMergeTree(version) ORDER BY ({order_by})"
        )

    def ensure_schema(self) -> None:
        with self._lock:
            self.client.command(f"CREATE DATABASE IF NOT EXISTS {self.database}")
            for table in TABLES:
                self.client.command(self._create_table(table))

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
        """Close the client (a store made from another leaves it to that one)."""
        if self._owner:
            with self._lock:
                self.client.close()

    def on_database(self, database: str) -> ClickHouseStore:
        """A store of ``database`` on this store's engine, client and lock (its schema ensured)."""
        other = _Sibling(self, database)
        other.ensure_schema()
        return other

    # --- scratch databases (time travel) -----------------------------------------------------

    @contextmanager
    def scratch(self, tables: Sequence[str]) -> Iterator[ClickHouseStore]:
        """A fresh database with ``tables`` on this engine (chdb: one data path per process), dropped
        on exit. The first use also drops scratch databases a crashed process left behind."""
        if not self._swept:
            self._swept = True
            self._sweep_scratch()
        scratch = _ScratchStore(self, f"{SCRATCH_PREFIX}{int(time.time())}_{uuid.uuid4().hex}")
        try:
            scratch.create(tables)
            yield scratch
        finally:
            scratch.drop_all()

    def _sweep_scratch(self) -> None:
        cutoff = int(time.time()) - SCRATCH_MAX_AGE_S
        try:
            rows = self.query(
                "SELECT name FROM system.databases WHERE startsWith(name, {p:String})", {"p": SCRATCH_PREFIX}
            )
            for r in rows:
                stamp = str(r["name"])[len(SCRATCH_PREFIX) :].split("_", 1)[0]
                if stamp.isdigit() and int(stamp) < cutoff:
                    _ScratchStore(self, str(r["name"])).drop_all()
        except Exception:  # housekeeping: never fail a read for it
            log.warning("could not sweep leftover time-travel databases", exc_info=True)


SCRATCH_PREFIX = "agentflow_tt_"
SCRATCH_MAX_AGE_S = 3600  # scratch databases older than this are leftovers of a crashed process


class _Sibling(ClickHouseStore):
    """Another database on a store's engine, client and lock (its __init__ would open another client)."""

    def __init__(self, owner: ClickHouseStore, database: str) -> None:
        self.__dict__.update(vars(owner))
        self.database = _check_database(database)
        self._owner = False
        self._swept = False


class _ScratchStore(_Sibling):
    """A throwaway database on the live store's engine, client and lock."""

    def __init__(self, live: ClickHouseStore, database: str) -> None:
        if not database.startswith(SCRATCH_PREFIX):
            raise ValueError(f"bad scratch database name {database!r}")
        super().__init__(live, database)

    def create(self, tables: Sequence[str]) -> None:
        with self._lock:
            self.client.command(f"CREATE DATABASE IF NOT EXISTS {self.database}")
            for table in tables:
                self.client.command(self._create_table(table))

    def drop_all(self) -> None:
        with self._lock:
            self.client.command(f"DROP DATABASE IF EXISTS {self.database} SYNC")


def normalize_row(table: str, row: Row) -> Row:
    """A projected row as it reads back from ClickHouse (ms timestamps, tz-aware UTC)."""
    out = dict(row)
    for col, ty in columns(table):
        v = out.get(col)
        if "DateTime64" in ty and isinstance(v, datetime):
            out[col] = _trunc_ms(_aware(v).astimezone(UTC))
    return out

"""Iceberg lakehouse sink: full event history plus curated order/payment state histories.

pyiceberg SqlCatalog on the Postgres URL (tables ``iceberg_tables``/``iceberg_namespace_properties``,
the layout Flink's JDBC catalog reads), warehouse ``file://<data dir>/warehouse``, namespace
``agentflow``. Rows are buffered and committed in batches (by row count or age), never per event.
Each table's commit carries the tail cursor and watermark in its snapshot summary, so data and
checkpoint are one atomic commit per table. Tables commit one after another; a crash in between
leaves them at different cursors: on restart the sink resumes from the oldest one and each table
drops the events at or below its own cursor, so nothing is lost or written twice.
``orders_history``/``payments_history`` append the row state after every event that changed it
(readers take the latest ``version`` per id).

The order/payment state the next events need is a bounded cache (``cache_rows``), not the whole
history: a row missing from it is read back from the history table by key (a filtered scan that the
files' min/max statistics prune), so start reads no data files and memory does not grow with the
lake. Rows are only evicted right after a commit, when every cached row is in the lake. Lake
maintenance (connectors/lake_maintenance.py) rewrites files in snapshots without a cursor: the
checkpoint is the newest snapshot in the current one's ancestry that carries one.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.expressions import In
from pyiceberg.table import Table

from domain.events import RecordedEvent
from projections.rows import (
    ORDERS,
    PAYMENTS,
    STREAM_TABLE,
    Key,
    Row,
    event_row,
    invalid_reason,
    project,
)

log = logging.getLogger(__name__)

NAMESPACE = "agentflow"
CURSOR_TXID = "agentflow.cursor.txid"
CURSOR_POSITION = "agentflow.cursor.position"
WATERMARK = "agentflow.watermark"

TS = pa.timestamp("us", tz="UTC")
EVENTS_SCHEMA = pa.schema(
    [
        ("tenant_id", pa.string()),
        ("position", pa.int64()),
        ("event_id", pa.string()),
        ("event_type", pa.string()),
        ("stream_type", pa.string()),
        ("stream_id", pa.string()),
        ("stream_version", pa.int64()),
        ("schema_version", pa.int32()),
        ("occurred_at", TS),
        ("recorded_at", TS),
        ("transaction_id", pa.int64()),
        ("command_id", pa.string()),
        ("correlation_id", pa.string()),
        ("data", pa.string()),
        ("metadata", pa.string()),
    ]
)
ORDERS_SCHEMA = pa.schema(
    [
        ("tenant_id", pa.string()),
        ("order_id", pa.string()),
        ("version", pa.int64()),
        ("event_type", pa.string()),
        ("user_id", pa.string()),
        ("status", pa.string()),
        ("currency", pa.string()),
        ("channel", pa.string()),
        ("total_minor", pa.int64()),
        ("paid_minor", pa.int64()),
        ("refunded_minor", pa.int64()),
        ("payment_id", pa.string()),
        ("payment_status", pa.string()),
        ("lines", pa.string()),
        ("placed_at", TS),
        ("confirmed_at", TS),
        ("shipped_at", TS),
        ("delivered_at", TS),
        ("cancelled_at", TS),
        ("refunded_at", TS),
        ("updated_at", TS),
    ]
)
PAYMENTS_SCHEMA = pa.schema(
    [
        ("tenant_id", pa.string()),
        ("payment_id", pa.string()),
        ("version", pa.int64()),
        ("event_type", pa.string()),
        ("order_id", pa.string()),
        ("amount_minor", pa.int64()),
        ("currency", pa.string()),
        ("method", pa.string()),
        ("status", pa.string()),
        ("refunded_minor", pa.int64()),
        ("failure_reason", pa.string()),
        ("initiated_at", TS),
        ("completed_at", TS),
        ("failed_at", TS),
    ]
)
SCHEMAS = {"events": EVENTS_SCHEMA, "orders_history": ORDERS_SCHEMA, "payments_history": PAYMENTS_SCHEMA}
HISTORY_OF = {"orders_history": ORDERS, "payments_history": PAYMENTS}

CursorFactory = Callable[[int, int], Any]


def _default_cursor(txid: int, position: int) -> tuple[int, int]:
    return (txid, position)


def cursor_parts(cursor: Any) -> tuple[int, int]:
    """(txid, position) of a TailCursor-like object or a 2-tuple."""
    if isinstance(cursor, tuple):
        return int(cursor[0]), int(cursor[1])
    return int(cursor.txid), int(cursor.position)


HISTORY_KEY = {ORDERS: "order_id", PAYMENTS: "payment_id"}
HISTORY_TABLE = {ORDERS: "orders_history", PAYMENTS: "payments_history"}
# exact min/max of the history keys in every data file (Iceberg truncates strings to 16 characters by
# default, and generated ids share longer prefixes), so the read-back by key skips most files
TABLE_PROPERTIES = {
    HISTORY_TABLE[t]: {f"write.metadata.metrics.column.{key}": "full"} for t, key in HISTORY_KEY.items()
}
# pyiceberg prunes files by min/max only for IN lists of at most 200 values (expressions.visitors)
LOOKUP_CHUNK = 200


def history_row(rec: dict[str, Any], target: str) -> Row:
    """A stored history row as the projection's row (no event_type; order lines parsed)."""
    rec.pop("event_type", None)
    if target == ORDERS:
        rec["lines"] = json.loads(rec["lines"] or "[]")
    return rec


class _RowCache:
    """Current order/payment rows (everything else is unknown to the lake sink): the recently used
    ones in memory, the rest read back from the lake's history tables by key (``prefetch``)."""

    def __init__(self, tables: Callable[[str], Table], capacity: int) -> None:
        self._tables = tables
        self.capacity = capacity
        self.rows: dict[str, dict[Key, Row]] = {ORDERS: {}, PAYMENTS: {}}
        self.lookups = 0  # keys read back from the lake (for tests and the benchmark)

    def get(self, table: str, key: Key) -> Row | None:
        state = self.rows.get(table)
        return state.get(key) if state is not None else None

    def put(self, table: str, key: Key, row: Row) -> None:
        state = self.rows[table]
        state.pop(key, None)  # re-insert: dict order is the recency order
        state[key] = row

    def size(self) -> int:
        return sum(len(r) for r in self.rows.values())

    def prefetch(self, events: Iterable[RecordedEvent]) -> None:
        """Read back the rows these events update that are not cached. An event that opens its
        stream needs none (projections.rows.created_keys)."""
        missing: dict[str, set[Key]] = {ORDERS: set(), PAYMENTS: set()}
        opened: set[tuple[str, Key]] = set()  # streams opened in this batch: nothing to read back
        for e in events:
            target = STREAM_TABLE.get(e.stream_type)
            if target not in missing:
                continue
            key = (e.tenant_id, e.stream_id)
            if e.stream_version == 1:
                opened.add((target, key))
            elif key not in self.rows[target] and (target, key) not in opened:
                missing[target].add(key)
        for target, keys in missing.items():
            if keys:
                self._read_back(target, sorted(keys))

    def _read_back(self, target: str, keys: list[Key]) -> None:
        table = self._tables(HISTORY_TABLE[target])
        if table.current_snapshot() is None:
            return
        key_col = HISTORY_KEY[target]
        latest: dict[Key, dict[str, Any]] = {}
        for i in range(0, len(keys), LOOKUP_CHUNK):
            chunk = keys[i : i + LOOKUP_CHUNK]
            wanted = set(chunk)
            ids = In(key_col, {k[1] for k in chunk})  # type: ignore[call-arg,arg-type]  # pydantic __init__ vs __new__
            reader = table.scan(row_filter=ids).to_arrow_batch_reader()
            for batch in reader:
                for rec in batch.to_pylist():
                    k = (rec["tenant_id"], rec[key_col])
                    if k in wanted and (k not in latest or rec["version"] > latest[k]["version"]):
                        latest[k] = rec
        self.lookups += len(keys)
        for k, rec in latest.items():
            self.put(target, k, history_row(rec, target))

    def trim(self) -> None:
        """Drop the least recently used rows beyond capacity (call only when nothing is buffered)."""
        for state in self.rows.values():
            excess = len(state) - self.capacity // 2
            if excess > 0:
                for key in list(itertools.islice(state, excess)):
                    del state[key]


def make_catalog(pg_url: str, data_dir: str | Path, name: str = "agentflow") -> SqlCatalog:
    warehouse = Path(data_dir, "warehouse").resolve()
    warehouse.mkdir(parents=True, exist_ok=True)
    return SqlCatalog(name, uri=pg_url, warehouse=f"file://{warehouse}")


class IcebergSink:
    def __init__(
        self,
        catalog: SqlCatalog,
        max_rows: int = 5000,
        max_age_seconds: float = 5.0,
        cursor_factory: CursorFactory = _default_cursor,
        name: str = "iceberg",
        clock: Callable[[], float] = time.monotonic,
        cache_rows: int = 200_000,
    ) -> None:
        """``cache_rows``: order + payment rows kept in memory (half each) between commits."""
        self.catalog = catalog
        self.cache_rows = cache_rows
        self.max_rows = max_rows
        self.max_age = max_age_seconds
        self._clock = clock  # ages the buffer against max_age_seconds (seconds, monotonic)
        self.cursor_factory = cursor_factory
        self.name = name
        self._lock = threading.Lock()
        catalog.create_namespace_if_not_exists(NAMESPACE)
        self.tables: dict[str, Table] = {
            t: catalog.create_table_if_not_exists(
                f"{NAMESPACE}.{t}", schema=schema, properties=TABLE_PROPERTIES.get(t, {})
            )
            for t, schema in SCHEMAS.items()
        }
        self.commits = 0
        self.last_commit_seconds = 0.0
        self._reset()

    def _reset(self) -> None:
        """(Re)load checkpoints from the committed tables; forget cached state; drop buffers."""
        self.tables = {t: tbl.refresh() for t, tbl in self.tables.items()}
        self.committed: dict[str, tuple[tuple[int, int] | None, int]] = {
            t: self._snapshot_checkpoint(tbl) for t, tbl in self.tables.items()
        }
        self.state = _RowCache(self.tables.__getitem__, self.cache_rows)
        self.buffers: dict[str, list[dict[str, Any]]] = {t: [] for t in SCHEMAS}
        self.pending_cursor: tuple[int, int] | None = None
        self.pending_watermark = 0
        self.first_buffered_at: float | None = None
        self.committed_watermark = min(wm for _, wm in self.committed.values())

    # --- checkpoint ---------------------------------------------------------------------------

    @staticmethod
    def _snapshot_checkpoint(table: Table) -> tuple[tuple[int, int] | None, int]:
        """The cursor of the newest sink commit in the current snapshot's ancestry (maintenance
        snapshots in between carry none)."""
        snap = table.current_snapshot()
        while snap is not None:
            props = snap.summary.additional_properties if snap.summary is not None else {}
            if CURSOR_TXID in props:
                return (int(props[CURSOR_TXID]), int(props[CURSOR_POSITION])), int(props.get(WATERMARK, 0))
            parent = snap.parent_snapshot_id
            snap = table.snapshot_by_id(parent) if parent is not None else None
        return None, 0

    def load_checkpoint(self) -> tuple[Any | None, int]:
        with self._lock:
            if self.first_buffered_at is not None:  # the runner restarts from here: forget the buffers
                self._reset()
        cursors = [c for c, _ in self.committed.values()]
        if any(c is None for c in cursors):
            return None, 0
        oldest = min(c for c in cursors if c is not None)
        return self.cursor_factory(*oldest), min(wm for _, wm in self.committed.values())

    # --- sink port ----------------------------------------------------------------------------

    def _after(self, table: str, e: RecordedEvent) -> bool:
        done = self.committed[table][0]
        return done is None or (e.transaction_id, e.position) > done

    def apply(self, events: Sequence[RecordedEvent], cursor: Any | None, watermark: int) -> None:
        with self._lock:
            try:
                self._apply(events, cursor, watermark)
            except Exception:
                self._reset()  # buffers/state may be half-updated: fall back to the committed tables
                raise

    def _apply(self, events: Sequence[RecordedEvent], cursor: Any | None, watermark: int) -> None:
        # invalid events are dead-lettered by the serving sink; not part of the lake
        valid = [e for e in events if invalid_reason(e) is None]
        self.state.prefetch(valid)
        for e in valid:
            if self._after("events", e):
                self.buffers["events"].append({**event_row(e), "transaction_id": e.transaction_id})
            if e.stream_type not in ("order", "payment"):
                continue
            for change in project(e, self.state):
                history = "orders_history" if change.table == ORDERS else "payments_history"
                if change.table not in (ORDERS, PAYMENTS):
                    continue
                self.state.put(change.table, change.key, change.row)
                if self._after(history, e):
                    rec = dict(change.row)
                    rec["event_type"] = e.event_type
                    if change.table == ORDERS:
                        rec["lines"] = json.dumps(rec["lines"], sort_keys=True)
                    self.buffers[history].append(rec)
        if cursor is not None:
            self.pending_cursor = cursor_parts(cursor)
            self.pending_watermark = max(self.pending_watermark, watermark)
        if self.first_buffered_at is None:
            if events:
                self.first_buffered_at = self._clock()
            else:  # nothing buffered: the lake already holds every event up to this watermark
                self.committed_watermark = max(self.committed_watermark, watermark)
        buffered = sum(len(b) for b in self.buffers.values())
        if buffered >= self.max_rows:
            self._commit()
        elif buffered == 0:
            self.state.trim()  # nothing uncommitted in the cache

    def tick(self) -> None:
        if self.first_buffered_at is not None and self._clock() - self.first_buffered_at >= self.max_age:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            try:
                self._commit()
            except Exception:
                self._reset()
                raise

    def _commit(self) -> None:
        if self.first_buffered_at is None:
            return
        started = time.perf_counter()
        props: dict[str, str] = {}
        if self.pending_cursor is not None:
            props = {
                CURSOR_TXID: str(self.pending_cursor[0]),
                CURSOR_POSITION: str(self.pending_cursor[1]),
                WATERMARK: str(self.pending_watermark),
            }
        for table, rows in self.buffers.items():
            if not rows and not props:
                continue
            data = pa.Table.from_pylist(rows, schema=SCHEMAS[table])
            self.tables[table].append(data, snapshot_properties=props)
            if self.pending_cursor is not None:
                self.committed[table] = (self.pending_cursor, self.pending_watermark)
            rows.clear()
        self.first_buffered_at = None
        self.state.trim()  # everything cached is committed now
        self.commits += 1
        self.committed_watermark = max(self.committed_watermark, self.pending_watermark)
        self.last_commit_seconds = time.perf_counter() - started
        log.debug("iceberg commit in %.3fs", self.last_commit_seconds)

    # --- readers ------------------------------------------------------------------------------

    def table(self, name: str) -> Table:
        try:
            return self.catalog.load_table(f"{NAMESPACE}.{name}")
        except NoSuchTableError:
            raise KeyError(name) from None


def latest_rows(rows: list[dict[str, Any]], key: str) -> dict[tuple[str, str], dict[str, Any]]:
    """Latest history row per (tenant_id, id)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        k = (r["tenant_id"], r[key])
        if k not in out or r["version"] > out[k]["version"]:
            out[k] = r
    return out

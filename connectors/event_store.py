"""Postgres event store (commands/ports.EventStorePort).

An append is ONE autocommit statement (one round trip, atomic): it takes the transaction id first
(``pg_current_xact_id()`` before any ``nextval`` of the position sequence, which commit-order-safe
tailing relies on), checks every stream's expected version, records the idempotency key, inserts all
events and (``notify=True``, the default) notifies ``agentflow_events`` with the last position.

NOTIFY takes a database-wide lock from pre-commit until the commit is flushed, which serialises
committing appends. When the tailers live in the writer's process, construct the store with
``notify=False`` and register their wake-ups with ``add_commit_listener``: listeners run after every
successful append (i.e. after its commit), in the appending thread.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime, timedelta
from time import perf_counter
from typing import Any

import msgspec
import psycopg
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine

from commands.ports import (
    AppendResult,
    DuplicateEventId,
    IdempotencyRecord,
    IdempotencyReplay,
    StreamKey,
    StreamWrite,
    VersionConflict,
)
from connectors import tracing
from connectors.database import pooled_psycopg
from connectors.prometheus_metrics import APPEND_EVENTS, APPEND_SECONDS
from domain.events import RecordedEvent
from domain.upcasting import upcast_event
from projections.feeds import FEEDERS, looked_up_streams, own_stream

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "agentflow_events"
VERSION_KEY = "events_stream_version_key"
EVENT_ID_KEY = "events_event_id_key"
ID_KINDS = ("order", "payment", "product", "user")

_encode = msgspec.json.Encoder().encode


def _json(value: Any) -> str:
    return _encode(value).decode()


EVENT_COLUMNS = (
    "position, tenant_id, stream_type, stream_id, stream_version, event_id::text, event_type, "
    "schema_version, data, occurred_at, recorded_at, transaction_id::text::bigint, metadata"
)


def row_to_event(row: Sequence[Any]) -> RecordedEvent:
    """A row selected with EVENT_COLUMNS -> a RecordedEvent at the current schema (domain/upcasting.py)."""
    data = row[8]
    if isinstance(data, str):
        data = json.loads(data)
    return upcast_event(RecordedEvent(
        position=row[0],
        tenant_id=row[1],
        stream_type=row[2],
        stream_id=row[3],
        stream_version=row[4],
        event_id=row[5],
        event_type=row[6],
        schema_version=row[7],
        data=data,
        occurred_at=row[9],
        recorded_at=row[10],
        transaction_id=row[11],
        metadata=row[12] if row[12] is not None else {},
    ))


# One statement: xid first (CTE x is scanned before any row reaches the INSERT, i.e. before nextval),
# version check, idempotency row, multi-row insert, notify. Nothing is written unless every stream's
# current version equals its expected version; a concurrent writer of the same version makes the
# INSERT fail on events_stream_version_key, which aborts the whole statement.
_APPEND_TEMPLATE = """
WITH d AS MATERIALIZED (SELECT %(doc)s::jsonb AS doc),
x AS MATERIALIZED (SELECT pg_current_xact_id() AS xid),
cur AS (
    SELECT w.stream_type, w.stream_id, w.expected,
           -- last row of events_stream_version_key at or before (tenant, stream, max int): the stream's
           -- head if it exists. The row comparison keeps the planner on that index whatever the stats.
           COALESCE((SELECT CASE WHEN e.tenant_id = %(tenant)s AND e.stream_type = w.stream_type
                                  AND e.stream_id = w.stream_id THEN e.stream_version END
                     FROM events e
                     WHERE (e.tenant_id, e.stream_type, e.stream_id, e.stream_version)
                           <= (%(tenant)s, w.stream_type, w.stream_id, 2147483647)
                     ORDER BY e.tenant_id DESC, e.stream_type DESC, e.stream_id DESC, e.stream_version DESC
                     LIMIT 1), 0) AS actual
    FROM d, jsonb_to_recordset(d.doc->'w') AS w(stream_type text, stream_id text, expected int)
),
versions_ok AS MATERIALIZED (
    SELECT NOT EXISTS (SELECT 1 FROM cur WHERE actual <> expected) AS ok
),
idem AS (
    INSERT INTO idempotency_keys (tenant_id, key, request_hash, status_code, response)
    SELECT %(tenant)s, i.key, i.request_hash, i.status_code, i.response
    FROM d, versions_ok,
         jsonb_to_record(d.doc->'i') AS i(key text, request_hash text, status_code int, response jsonb)
    WHERE %(has_idem)s AND versions_ok.ok
    ON CONFLICT DO NOTHING
    RETURNING 1 AS inserted
),
ins AS (
    INSERT INTO events (tenant_id, stream_type, stream_id, stream_version, event_id, event_type,
                        schema_version, data, metadata, transaction_id)
    SELECT %(tenant)s, v.stream_type, v.stream_id, v.stream_version, COALESCE(v.event_id, gen_random_uuid()),
           v.event_type, v.schema_version, v.data, d.doc->'m', x.xid
    FROM d, versions_ok, x,
         ROWS FROM (jsonb_to_recordset(d.doc->'e') AS (stream_type text, stream_id text,
                    stream_version int, event_type text, schema_version int, data jsonb, event_id uuid))
             WITH ORDINALITY
             AS v(stream_type, stream_id, stream_version, event_type, schema_version, data, event_id, ord)
    WHERE versions_ok.ok AND (NOT %(has_idem)s OR EXISTS (SELECT 1 FROM idem))
    ORDER BY v.ord
    RETURNING position, stream_type, stream_id, stream_version
)
{notify_cte}SELECT 'e', position, stream_type, stream_id, stream_version FROM ins
UNION ALL
SELECT 'c', expected::bigint, stream_type, stream_id, actual FROM cur WHERE actual <> expected
UNION ALL
SELECT 'i', NULL::bigint, NULL::text, NULL::text, NULL::int
    FROM versions_ok WHERE versions_ok.ok AND %(has_idem)s AND NOT EXISTS (SELECT 1 FROM idem)
{notify_select}"""

_NOTIFY_CTE = """, n AS (
    SELECT pg_notify('agentflow_events', max(position)::text) FROM ins HAVING count(*) > 0
)
"""
_NOTIFY_SELECT = """UNION ALL
SELECT 'n', NULL::bigint, NULL::text, NULL::text, NULL::int FROM n
"""
APPEND_SQL = _APPEND_TEMPLATE.format(notify_cte=_NOTIFY_CTE, notify_select=_NOTIFY_SELECT)
APPEND_SQL_NO_NOTIFY = _APPEND_TEMPLATE.format(notify_cte="", notify_select="")

def _append_span(tenant_id: str, writes: Sequence[StreamWrite]) -> AbstractContextManager[Any]:
    """The append's span (tracing on): the events' metadata carry its traceparent."""
    if not tracing.active():
        return nullcontext()
    return tracing.span("event_store.append", {
        "agentflow.tenant": tenant_id, "agentflow.streams": len(writes),
        "agentflow.events": sum(len(w.events) for w in writes),
    })  # fmt: skip


LOAD_STREAM_SQL = (
    f"SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = %(t)s AND stream_type = %(st)s "
    "AND stream_id = %(sid)s AND stream_version > %(v)s ORDER BY stream_version"
)

CURRENT_VERSIONS_SQL = """
SELECT w.stream_type, w.stream_id,
       COALESCE((SELECT max(e.stream_version) FROM events e WHERE e.tenant_id = %(tenant)s
                 AND e.stream_type = w.stream_type AND e.stream_id = w.stream_id), 0)
FROM unnest(%(w_types)s::text[], %(w_ids)s::text[]) AS w(stream_type, stream_id)
"""


CommitListener = Callable[[AppendResult], None]
Query = Callable[[str, dict[str, Any]], list[Any]]


class PostgresEventStore:
    """EventStorePort on Postgres; also the read paths used by rebuilds and time travel."""

    def __init__(self, engine: Engine, notify: bool = True) -> None:
        self.engine = engine
        self.notify = notify
        self._append_sql = APPEND_SQL if notify else APPEND_SQL_NO_NOTIFY
        self._listeners: list[CommitListener] = []
        # Single-statement work runs in autocommit: no BEGIN/COMMIT round trips.
        self._ac = engine.execution_options(isolation_level="AUTOCOMMIT")

    # -- commit listeners -------------------------------------------------------------------------
    def add_commit_listener(self, listener: CommitListener) -> None:
        """Call ``listener(result)`` after every successful ``append`` (in the appending thread)."""
        self._listeners = [*self._listeners, listener]

    def remove_commit_listener(self, listener: CommitListener) -> None:
        self._listeners = [fn for fn in self._listeners if fn is not listener]

    def committed(self, result: AppendResult) -> None:
        """Tell the listeners about a commit; ``append_on`` callers call this after their COMMIT."""
        for listener in self._listeners:
            try:
                listener(result)
            except Exception:
                log.exception("commit listener %r failed", listener)

    # -- pooled raw connections -------------------------------------------------------------------
    def _pg(self) -> AbstractContextManager[psycopg.Connection[Any]]:
        """A pooled psycopg connection in autocommit; statements are prepared server-side."""
        return pooled_psycopg(self.engine)

    def _raw_query(self, sql: str, params: dict[str, Any]) -> list[Any]:
        with self._pg() as pg:
            return pg.execute(sql, params).fetchall()  # type: ignore[arg-type]

    # -- writes -----------------------------------------------------------------------------------
    def append(
        self,
        tenant_id: str,
        writes: Sequence[StreamWrite],
        metadata: dict[str, Any],
        idempotency: IdempotencyRecord | None = None,
    ) -> AppendResult:
        with _append_span(tenant_id, writes):
            params = self._append_params(tenant_id, writes, metadata, idempotency)
            result = self._append_single(params, tenant_id, writes, idempotency)
        if self._listeners:
            self.committed(result)
        return result

    def _append_single(
        self,
        params: dict[str, Any],
        tenant_id: str,
        writes: Sequence[StreamWrite],
        idempotency: IdempotencyRecord | None,
    ) -> AppendResult:
        with self._pg() as pg:
            def query(sql: str, p: dict[str, Any]) -> list[Any]:
                return pg.execute(sql, p).fetchall()  # type: ignore[arg-type]

            return self._append(query, lambda: None, params, tenant_id, writes, idempotency)

    def append_on(
        self,
        conn: Connection,
        tenant_id: str,
        writes: Sequence[StreamWrite],
        metadata: dict[str, Any],
        idempotency: IdempotencyRecord | None = None,
    ) -> AppendResult:
        """Append on a caller's connection: inside its transaction the events commit (and the notify
        fires) with that transaction; commit listeners are NOT called (call ``committed`` after the
        COMMIT). On VersionConflict, IdempotencyReplay or DuplicateEventId nothing was written by this
        call; when the refusal came from a unique violation or a deadlock, the caller's transaction has
        already been rolled back."""

        def query(sql: str, p: dict[str, Any]) -> list[Any]:
            try:
                return list(conn.exec_driver_sql(sql, p).all())
            except sa_exc.DBAPIError as e:
                if isinstance(e.orig, psycopg.Error):
                    raise e.orig from None
                raise

        with _append_span(tenant_id, writes):
            params = self._append_params(tenant_id, writes, metadata, idempotency)
            return self._append(query, conn.rollback, params, tenant_id, writes, idempotency)

    def _append(
        self,
        query: Query,
        rollback: Callable[[], None],
        params: dict[str, Any],
        tenant_id: str,
        writes: Sequence[StreamWrite],
        idempotency: IdempotencyRecord | None,
    ) -> AppendResult:
        started = perf_counter()
        try:
            rows = query(self._append_sql, params)
        except (psycopg.errors.UniqueViolation, psycopg.errors.DeadlockDetected) as e:
            # UniqueViolation: a concurrent writer committed the same stream version after our check.
            # Deadlock: two multi-stream appends raced on the same versions; one of them must lose.
            if isinstance(e, psycopg.errors.UniqueViolation) and e.diag.constraint_name == EVENT_ID_KEY:
                rollback()
                raise DuplicateEventId(str(e.diag.message_detail or e)) from None
            if isinstance(e, psycopg.errors.UniqueViolation) and e.diag.constraint_name != VERSION_KEY:
                raise
            rollback()
            raise self._conflict_after_race(query, tenant_id, writes) from None
        APPEND_SECONDS.observe(perf_counter() - started)
        result = self._result(rows, query, tenant_id, writes, idempotency)
        APPEND_EVENTS.observe(len(result.positions))  # a refused append (raised above) wrote none
        return result

    def _result(
        self,
        rows: Sequence[Any],
        query: Query,
        tenant_id: str,
        writes: Sequence[StreamWrite],
        idempotency: IdempotencyRecord | None,
    ) -> AppendResult:
        """APPEND_SQL's rows -> AppendResult, or VersionConflict / IdempotencyReplay (nothing written)."""
        positions: list[int] = []
        versions: dict[StreamKey, int] = {}
        conflict: VersionConflict | None = None
        replay = False
        for kind, pos, st, sid, ver in rows:
            if kind == "e":
                positions.append(pos)
                key = (st, sid)
                if ver > versions.get(key, 0):
                    versions[key] = ver
            elif kind == "c" and conflict is None:
                conflict = VersionConflict(st, sid, pos, ver)
            elif kind == "i":
                replay = True
        if conflict is not None or replay:
            # the statement wrote nothing; an earlier use of the idempotency key wins over a conflict
            if idempotency is not None:
                stored = self._get_idempotency(query, tenant_id, idempotency.key)
                if stored is not None:
                    raise IdempotencyReplay(stored)
            if conflict is not None:
                raise conflict
            raise RuntimeError("idempotency key conflict but no stored record")  # pragma: no cover
        positions.sort()
        for w in writes:
            versions.setdefault((w.stream_type, w.stream_id), w.expected_version)
        return AppendResult(positions=positions, stream_versions=versions)

    @staticmethod
    def _append_params(
        tenant_id: str,
        writes: Sequence[StreamWrite],
        metadata: dict[str, Any],
        idempotency: IdempotencyRecord | None,
    ) -> dict[str, Any]:
        """Everything but the tenant travels as one JSON document (far cheaper to send than arrays)."""
        ws: list[dict[str, Any]] = []
        es: list[dict[str, Any]] = []
        seen: set[StreamKey] = set()
        for w in writes:
            key = (w.stream_type, w.stream_id)
            if key in seen:
                raise ValueError(f"stream {key} appears twice in one append")
            seen.add(key)
            if w.expected_version < 0:
                raise ValueError(f"negative expected_version for {key}")
            ws.append(
                {"stream_type": w.stream_type, "stream_id": w.stream_id, "expected": w.expected_version}
            )
            version = w.expected_version
            for ev in w.events:
                if ev.stream_type != w.stream_type or ev.stream_id != w.stream_id:
                    raise ValueError(f"event for {(ev.stream_type, ev.stream_id)} inside the write for {key}")
                version += 1
                row = {
                    "stream_type": w.stream_type, "stream_id": w.stream_id, "stream_version": version,
                    "event_type": ev.event_type, "schema_version": ev.schema_version, "data": ev.data,
                }
                if ev.event_id is not None:
                    row["event_id"] = ev.event_id
                es.append(row)
        # the current span's traceparent (tracing on): projections and deliveries link back to the command
        doc: dict[str, Any] = {"w": ws, "e": es, "m": tracing.with_trace_context(metadata)}
        if idempotency is not None:
            doc["i"] = {"key": idempotency.key, "request_hash": idempotency.request_hash,
                        "status_code": idempotency.status_code, "response": idempotency.response}
        return {"tenant": tenant_id, "has_idem": idempotency is not None, "doc": _json(doc)}

    def _conflict_after_race(
        self, query: Query, tenant_id: str, writes: Sequence[StreamWrite]
    ) -> VersionConflict:
        actual = self._current_versions(query, tenant_id, writes)
        for w in writes:
            a = actual.get((w.stream_type, w.stream_id), 0)
            if a != w.expected_version:
                return VersionConflict(w.stream_type, w.stream_id, w.expected_version, a)
        # the winner has not committed yet (deadlock victim): report the first stream
        w = writes[0]
        return VersionConflict(w.stream_type, w.stream_id, w.expected_version, w.expected_version + 1)

    @staticmethod
    def _current_versions(
        query: Query, tenant_id: str, writes: Sequence[StreamWrite]
    ) -> dict[StreamKey, int]:
        rows = query(
            CURRENT_VERSIONS_SQL,
            {"tenant": tenant_id, "w_types": [w.stream_type for w in writes],
             "w_ids": [w.stream_id for w in writes]},
        )
        return {(r[0], r[1]): r[2] for r in rows}

    def stream_version(self, tenant_id: str, stream_type: str, stream_id: str) -> int:
        w = StreamWrite(stream_type, stream_id, 0, [])
        return self._current_versions(self._raw_query, tenant_id, [w]).get((stream_type, stream_id), 0)

    def get_idempotency(self, tenant_id: str, key: str) -> IdempotencyRecord | None:
        return self._get_idempotency(self._raw_query, tenant_id, key)

    @staticmethod
    def _get_idempotency(
        query: Query, tenant_id: str, key: str
    ) -> IdempotencyRecord | None:
        rows = query(
            "SELECT key, request_hash, status_code, response FROM idempotency_keys "
            "WHERE tenant_id = %(t)s AND key = %(k)s",
            {"t": tenant_id, "k": key},
        )
        if not rows:
            return None
        row = rows[0]
        return IdempotencyRecord(key=row[0], request_hash=row[1], status_code=row[2], response=row[3])

    def record_rejection(self, tenant_id: str, command: str, code: str, detail: dict[str, Any]) -> None:
        with self._pg() as pg:
            pg.execute(
                "INSERT INTO command_rejections (tenant_id, command, code, detail) "
                "VALUES (%(t)s, %(c)s, %(code)s, %(d)s::jsonb)",
                {"t": tenant_id, "c": command, "code": code, "d": _json(detail)},
            )

    def next_id(self, kind: str) -> int:
        if kind not in ID_KINDS:
            raise ValueError(f"unknown id kind {kind!r}; expected one of {ID_KINDS}")
        return int(self._raw_query(f"SELECT nextval('{kind}_number_seq')", {})[0][0])

    # -- reads ------------------------------------------------------------------------------------
    def load_stream(
        self, tenant_id: str, stream_type: str, stream_id: str, after_version: int = 0
    ) -> list[RecordedEvent]:
        rows = self._raw_query(
            LOAD_STREAM_SQL, {"t": tenant_id, "st": stream_type, "sid": stream_id, "v": after_version}
        )
        return [row_to_event(r) for r in rows]

    def read_stream_until(
        self, tenant_id: str, stream_type: str, stream_id: str, until: datetime
    ) -> list[RecordedEvent]:
        """The stream as it was at ``until`` (events with occurred_at <= until), for as_of queries."""
        with self._ac.connect() as conn:
            rows = conn.exec_driver_sql(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = %(t)s AND stream_type = %(st)s "
                "AND stream_id = %(sid)s AND occurred_at <= %(u)s ORDER BY stream_version",
                {"t": tenant_id, "st": stream_type, "sid": stream_id, "u": until},
            ).all()
        return [row_to_event(r) for r in rows]

    # -- history for time travel (readmodels.ports.EventHistory) ---------------------------------
    def _select(self, where: str, params: dict[str, Any], limit: int) -> list[RecordedEvent]:
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE {where} ORDER BY position LIMIT %(limit)s"
        with self._ac.connect() as conn:
            rows = conn.exec_driver_sql(sql, {**params, "limit": limit}).all()
        return [row_to_event(r) for r in rows]

    def streams_touched(
        self, tenant_id: str, stream_type: str, since: datetime | None, until: datetime, limit: int
    ) -> list[RecordedEvent]:
        params: dict[str, Any] = {"t": tenant_id, "u": until, "st": stream_type, "s": since}
        if since is None:
            where = "tenant_id = %(t)s AND stream_type = %(st)s AND occurred_at <= %(u)s"
        else:
            where = (
                "tenant_id = %(t)s AND stream_type = %(st)s AND occurred_at <= %(u)s AND stream_id IN ("
                "SELECT DISTINCT stream_id FROM events WHERE tenant_id = %(t)s AND stream_type = %(st)s "
                "AND occurred_at >= %(s)s AND occurred_at <= %(u)s)"
            )
        return self._select(where, params, limit)

    def recorded_between(
        self, tenant_id: str, since: datetime | None, until: datetime, limit: int
    ) -> list[RecordedEvent]:
        if since is None:
            params0 = {"t": tenant_id, "u": until}
            return self._select("tenant_id = %(t)s AND recorded_at <= %(u)s", params0, limit)
        # recorded_at >= occurred_at (transaction start); the occurred_at bound only lets the
        # (tenant_id, occurred_at) index cut the scan: an append's transaction never spans an hour
        params = {"t": tenant_id, "u": until, "s": since, "s0": since - timedelta(hours=1)}
        return self._select(
            "tenant_id = %(t)s AND occurred_at > %(s0)s AND occurred_at <= %(u)s "
            "AND recorded_at > %(s)s AND recorded_at <= %(u)s",
            params,
            limit,
        )

    def registrations(
        self, tenant_id: str, product_ids: Sequence[str], until: datetime, limit: int
    ) -> list[RecordedEvent]:
        return self._select(
            "tenant_id = %(t)s AND stream_type = 'product' AND stream_id = ANY(%(ids)s) "
            "AND event_type = 'ProductRegistered' AND occurred_at <= %(u)s",
            {"t": tenant_id, "u": until, "ids": list(product_ids)},
            limit,
        )

    def read_entity_events_until(
        self, tenant_id: str, entity_type: str, entity_id: str, until: datetime
    ) -> list[RecordedEvent]:
        """Every event that feeds one entity, as of ``until`` (time travel and lineage fold these), in
        position order: its own stream, the streams linked to it and the streams a fold of it looks up
        (projections/feeds.py says which)."""
        streams = {own_stream(entity_type, entity_id)}
        for link in FEEDERS.get(entity_type, ()):
            rows = self._raw_query(
                "SELECT DISTINCT stream_id FROM events WHERE tenant_id = %(t)s AND stream_type = %(st)s "
                "AND event_type = %(et)s AND data->>%(f)s = %(id)s AND occurred_at <= %(u)s",
                {"t": tenant_id, "st": link.stream_type, "et": link.event_type, "f": link.field,
                 "id": entity_id, "u": until},
            )
            streams.update((link.stream_type, r[0]) for r in rows)
        events = self._streams_until(tenant_id, streams, until)
        extra = looked_up_streams(entity_type, events) - streams
        if extra:
            looked_up = self._streams_until(tenant_id, extra, until)
            events = sorted([*events, *looked_up], key=lambda e: e.position)
        return events

    def _streams_until(
        self, tenant_id: str, streams: set[StreamKey], until: datetime
    ) -> list[RecordedEvent]:
        keys = sorted(streams)
        with self._ac.connect() as conn:
            rows = conn.exec_driver_sql(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = %(t)s AND occurred_at <= %(u)s "
                "AND (stream_type, stream_id) IN (SELECT * FROM unnest(%(st)s::text[], %(sid)s::text[])) "
                "ORDER BY position",
                {"t": tenant_id, "u": until, "st": [k[0] for k in keys], "sid": [k[1] for k in keys]},
            ).all()
        return [row_to_event(r) for r in rows]

    def count_rejections(self, tenant_id: str, since: datetime, until: datetime) -> int:
        with self._ac.connect() as conn:
            return int(
                conn.exec_driver_sql(
                    "SELECT count(*) FROM command_rejections WHERE tenant_id = %(t)s "
                    "AND at > %(s)s AND at <= %(u)s",
                    {"t": tenant_id, "s": since, "u": until},
                ).scalar_one()
            )

    def read_all(
        self,
        after_position: int = 0,
        limit: int = 1000,
        tenant_id: str | None = None,
        until: datetime | None = None,
        max_position: int | None = None,
    ) -> list[RecordedEvent]:
        """Committed events in position order (rebuilds, time travel).

        Position order is not commit order: for a complete replay, bound it with ``max_position``
        set to a tailer watermark (or use connectors.tailer.PostgresTailer for live reading).
        """
        clauses = ["position > %(after)s"]
        params: dict[str, Any] = {"after": after_position, "limit": limit}
        if tenant_id is not None:
            clauses.append("tenant_id = %(t)s")
            params["t"] = tenant_id
        if until is not None:
            clauses.append("occurred_at <= %(u)s")
            params["u"] = until
        if max_position is not None:
            clauses.append("position <= %(maxp)s")
            params["maxp"] = max_position
        where = " AND ".join(clauses)
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE {where} ORDER BY position LIMIT %(limit)s"
        with self._ac.connect() as conn:
            rows = conn.exec_driver_sql(sql, params).all()
        return [row_to_event(r) for r in rows]

    def changes(
        self,
        tenant_id: str,
        max_position: int,
        limit: int,
        before: int | None = None,
        stream_type: str | None = None,
        stream_id: str | None = None,
        event_types: Sequence[str] | None = None,
        since: datetime | None = None,
    ) -> list[RecordedEvent]:
        """The tenant's events at or below ``max_position`` (and below ``before``), newest first, at
        most ``limit`` (readmodels.ports.ChangeFeed: GET /v1/changelog)."""
        clauses = ["tenant_id = %(t)s", "position <= %(wm)s"]
        params: dict[str, Any] = {"t": tenant_id, "wm": max_position, "n": limit}
        if before is not None:
            clauses.append("position < %(before)s")
            params["before"] = before
        if stream_type is not None:
            clauses.append("stream_type = %(st)s")
            params["st"] = stream_type
        if stream_id is not None:
            clauses.append("stream_id = %(sid)s")
            params["sid"] = stream_id
        if event_types:
            clauses.append("event_type = ANY(%(types)s)")
            params["types"] = list(event_types)
        if since is not None:
            clauses.append("occurred_at >= %(since)s")
            params["since"] = since
        where = " AND ".join(clauses)
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE {where} ORDER BY position DESC LIMIT %(n)s"
        with self._ac.connect() as conn:
            rows = conn.exec_driver_sql(sql, params).all()
        return [row_to_event(r) for r in rows]

    def head_position(self) -> int:
        """Highest committed position."""
        with self._ac.connect() as conn:
            return int(conn.exec_driver_sql("SELECT COALESCE(max(position), 0) FROM events").scalar_one())

"""Commit-order-safe tailing of the Postgres event store (DESIGN invariant 2: no subscriber skips).

Positions are taken at insert time but transactions commit out of order, so ``position > last`` would
skip a slow transaction's events. Instead we read only rows whose transaction id is below the xmin of
the current snapshot (every such transaction has finished, and every future commit has a larger xid),
ordered by ``(transaction_id, position)``, and resume from that pair.

Watermark: the highest position P such that every event <= P has been yielded or will never exist.
Each poll reads L = last_value of the position sequence, then takes a fresh transaction id N
(appenders take their xid before nextval, so every transaction holding a position <= L has an xid < N).
Once a later snapshot has xmin >= N and every row below that xmin has been fetched, all events <= L
have been yielded. (The snapshot's own xmax is NOT enough: it is "latest completed xid + 1", and a
running transaction may hold a larger xid.) Taking N costs one xid per poll while writes happen;
idle polls skip it.

Wake-ups: with ``listen=True`` (default) wait() blocks on LISTEN agentflow_events. In the embedded
deployment the writer shares the process, so the store runs without NOTIFY and calls ``wake()`` after
each commit (``PostgresEventStore.add_commit_listener``); ``listen=False`` then makes wait() block on
that in-process signal, polling every ``poll_interval`` seconds to pick up writes from other processes.

``PositionTailer`` follows the same rule reading positions only (what the distributed serving loader
needs to know which positions exist).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy.engine import Engine

from connectors.database import connect_raw
from connectors.event_store import EVENT_COLUMNS, NOTIFY_CHANNEL, row_to_event
from domain.events import RecordedEvent

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TailCursor:
    """Last (transaction id, position) yielded; (0, 0) = from the beginning."""

    txid: int = 0
    position: int = 0


@dataclass(frozen=True, slots=True)
class TailBatch:
    events: list[RecordedEvent]
    cursor: TailCursor
    watermark: int
    caught_up: bool


FETCH_SQL = f"""
WITH s AS MATERIALIZED (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin)
SELECT s.xmin::text::bigint, e.*
FROM s LEFT JOIN LATERAL (
    SELECT {EVENT_COLUMNS} FROM events ev
    WHERE ev.transaction_id < s.xmin
      AND (ev.transaction_id, ev.position) > (%(txid)s::xid8, %(pos)s::bigint)
    ORDER BY ev.transaction_id, ev.position  -- qualified: the output column is transaction_id::bigint
    LIMIT %(limit)s
) e ON true
"""

SEQUENCE_SQL = "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM events_position_seq"
NEW_XID_SQL = "SELECT pg_current_xact_id()::text::bigint"


class PostgresTailer:
    """fetch() reads the next events in commit order; wait() blocks until there may be more.

    One instance per consumer thread (it keeps watermark state and a LISTEN connection).
    """

    def __init__(
        self,
        engine: Engine,
        listen_url: str | None = None,
        channel: str = NOTIFY_CHANNEL,
        initial_watermark: int = 0,
        listen: bool = True,
        poll_interval: float = 0.1,
    ) -> None:
        self.engine = engine
        self._ac = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.listen_url = listen_url or engine.url.render_as_string(hide_password=False)
        self.channel = channel
        self._watermark = initial_watermark
        self._pending: list[tuple[int, int]] = []  # (L, N) waiting for xmin >= N
        self._max_seen_l = initial_watermark
        self._listener: psycopg.Connection[Any] | None = None
        self.listen = listen
        self.poll_interval = poll_interval
        self._woken = threading.Event()

    @property
    def watermark(self) -> int:
        return self._watermark

    def fetch(self, cursor: TailCursor | None, limit: int = 1000) -> TailBatch:
        if limit <= 0:
            raise ValueError("limit must be positive")
        cursor = cursor or TailCursor()
        if self.listen:
            self._ensure_listener()
        with self._ac.connect() as conn:
            # 1) L, then (separate statement, own transaction) a fresh xid N > any xid holding a position <= L
            last = int(conn.exec_driver_sql(SEQUENCE_SQL).scalar_one())
            if last > self._max_seen_l:
                n = int(conn.exec_driver_sql(NEW_XID_SQL).scalar_one())
                self._pending.append((last, n))
                self._max_seen_l = last
            # 2) rows of finished transactions only, in commit-safe order, plus the snapshot's xmin
            rows = conn.exec_driver_sql(
                FETCH_SQL, {"txid": str(cursor.txid), "pos": cursor.position, "limit": limit}
            ).all()
        xmin = int(rows[0][0])
        events = [row_to_event(r[1:]) for r in rows if r[1] is not None]
        caught_up = len(events) < limit
        if events:
            cursor = TailCursor(events[-1].transaction_id, events[-1].position)
        if caught_up and self._pending:
            # every transaction with xid < xmin has finished and all its rows have now been yielded
            resolved = [pl for pl, pn in self._pending if pn <= xmin]
            if resolved:
                self._watermark = max(self._watermark, *resolved)
                self._pending = [(pl, pn) for pl, pn in self._pending if pn > xmin]
        return TailBatch(events=events, cursor=cursor, watermark=self._watermark, caught_up=caught_up)

    # -- LISTEN -------------------------------------------------------------------------------------
    def _ensure_listener(self) -> psycopg.Connection[Any] | None:
        if self._listener is not None and not self._listener.closed:
            return self._listener
        self._listener = None
        try:
            conn = connect_raw(self.listen_url, autocommit=True, application_name="agentflow-tailer")
            conn.execute(f'LISTEN "{self.channel}"')
        except psycopg.Error as e:
            log.warning("LISTEN %s failed: %s", self.channel, e)
            return None
        self._listener = conn
        return conn

    def wake(self, *_: object) -> None:
        """Make the current or next wait() return at once (thread-safe; usable as a commit listener)."""
        self._woken.set()

    def wait(self, timeout: float) -> bool:
        """Block until woken (True) or ``timeout`` seconds pass (False).

        listen=True: woken by a NOTIFY (or an earlier wake()); returns True after a lost connection
        too, so the caller polls instead of trusting silence. listen=False: woken by wake(), and never
        sleeps longer than ``poll_interval``.
        """
        if not self.listen:
            got = self._woken.wait(min(max(timeout, 0.0), self.poll_interval))
            self._woken.clear()  # every commit before this point is visible to the next fetch
            return got
        if self._woken.is_set():
            self._woken.clear()
            return True
        conn = self._ensure_listener()
        if conn is None:
            time.sleep(min(timeout, 1.0))
            return True
        try:
            got = False
            for _ in conn.notifies(timeout=max(timeout, 0.0), stop_after=1):
                got = True
            if got:
                for _ in conn.notifies(timeout=0.0):  # drain the burst: one wake-up is enough
                    pass
            return got
        except psycopg.OperationalError as e:
            log.warning("LISTEN connection lost (%s); reconnecting", e)
            self._close_listener()
            return True

    def _close_listener(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(Exception):
                self._listener.close()
        self._listener = None

    def close(self) -> None:
        self._close_listener()

    def __enter__(self) -> PostgresTailer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- positions only (the distributed serving loader: connectors/serving_loader.py) -----------------

POSITIONS_SQL = """
WITH s AS MATERIALIZED (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin)
SELECT s.xmin::text::bigint, e.txid, e.position
FROM s LEFT JOIN LATERAL (
    SELECT ev.transaction_id::text::bigint AS txid, ev.position FROM events ev
    WHERE ev.transaction_id < s.xmin
      AND (ev.transaction_id, ev.position) > (%(txid)s::xid8, %(pos)s::bigint)
      AND ev.position > %(floor)s
    ORDER BY ev.transaction_id, ev.position
    LIMIT %(limit)s
) e ON true
"""

# where a tail that only needs positions > floor may start: below every visible row above the floor
# and below every transaction still running (their xids are >= xmin)
START_SQL = """
SELECT least(
    (SELECT min(transaction_id)::text::bigint FROM events WHERE position > %(floor)s),
    pg_snapshot_xmin(pg_current_snapshot())::text::bigint)
"""


@dataclass(frozen=True, slots=True)
class PositionBatch:
    positions: list[int]
    cursor: TailCursor
    watermark: int
    caught_up: bool
    head: int  # last_value of the position sequence at this poll


class PositionTailer(PostgresTailer):
    """PostgresTailer's commit-order rule and watermark, reading positions only and only those above
    ``floor`` (the loader's restored watermark), without LISTEN (the loader polls)."""

    def __init__(self, engine: Engine, floor: int = 0) -> None:
        super().__init__(engine, listen=False, initial_watermark=floor)
        self.floor = floor
        self._head = floor

    def start_cursor(self) -> TailCursor:
        with self._ac.connect() as conn:
            txid = conn.exec_driver_sql(START_SQL, {"floor": self.floor}).scalar_one()
        return TailCursor(int(txid), 0)

    def fetch_positions(self, cursor: TailCursor, limit: int = 5000) -> PositionBatch:
        if limit <= 0:
            raise ValueError("limit must be positive")
        with self._ac.connect() as conn:
            last = int(conn.exec_driver_sql(SEQUENCE_SQL).scalar_one())
            self._head = max(self._head, last)
            if last > self._max_seen_l:
                n = int(conn.exec_driver_sql(NEW_XID_SQL).scalar_one())
                self._pending.append((last, n))
                self._max_seen_l = last
            rows = conn.exec_driver_sql(
                POSITIONS_SQL,
                {"txid": str(cursor.txid), "pos": cursor.position, "floor": self.floor, "limit": limit},
            ).all()
        xmin = int(rows[0][0])
        found = [(int(r[1]), int(r[2])) for r in rows if r[1] is not None]
        caught_up = len(found) < limit
        if found:
            cursor = TailCursor(*found[-1])
        if caught_up and self._pending:
            resolved = [pl for pl, pn in self._pending if pn <= xmin]
            if resolved:
                self._watermark = max(self._watermark, *resolved)
                self._pending = [(pl, pn) for pl, pn in self._pending if pn > xmin]
        return PositionBatch([p for _, p in found], cursor, self._watermark, caught_up, self._head)

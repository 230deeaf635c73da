"""A Postgres session advisory lock on a connection of its own: one holder per database and name
(``pg_try_advisory_lock(hashtext('agentflow'), hashtext(name))``), released when the holder lets go
or its session ends (a crashed holder cannot keep it)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import psycopg

from connectors.database import connect_raw

log = logging.getLogger(__name__)

LOCK_SQL = "SELECT pg_try_advisory_lock(hashtext('agentflow'), hashtext(%(name)s))"


class SessionLock:
    def __init__(self, database_url: str, name: str) -> None:
        self.database_url = database_url
        self.name = name
        self._conn: psycopg.Connection[Any] | None = None

    def hold(self) -> bool:
        """True while this process holds the lock (taking it if it is free). A lost session answers
        False once, so the holder starts over when it gets the lock again."""
        if self._conn is not None:
            try:
                if not self._conn.closed:
                    self._conn.execute("SELECT 1")
                    return True
            except psycopg.Error:
                pass
            self.release()
            return False
        try:
            conn = connect_raw(self.database_url, autocommit=True, application_name=f"agentflow-{self.name}")
        except psycopg.Error as exc:
            log.warning("%s lock: cannot connect: %s", self.name, exc)
            return False
        row = conn.execute(LOCK_SQL, {"name": self.name}).fetchone()
        if not (row and row[0]):
            conn.close()
            return False
        self._conn = conn
        return True

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None

    @contextlib.contextmanager
    def held(self) -> Iterator[bool]:
        """Try once; yields whether this process holds the lock for the block."""
        got = self.hold()
        try:
            yield got
        finally:
            if got:
                self.release()

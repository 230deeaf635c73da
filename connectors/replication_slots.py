"""Dropping what a Debezium Postgres capture leaves on a database: its logical replication slot (which
pins WAL for as long as it exists) and its publication. One procedure for every capture: the event
store's (services/distributed/cdc.py), a legacy source's (connectors/legacy/debezium_config.py) and the
tests' clean-up of legacy databases.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import psycopg

POLL_S = 0.1


def drop_slot_and_publication(
    conn: psycopg.Connection[Any], slot: str, publication: str | None, timeout: float = 30.0
) -> None:
    """Drop ``slot`` once no walsender holds it, then ``publication`` (when given); ``conn`` must be in
    autocommit. A walsender still holding the slot after ``timeout`` seconds (that of a stopped or
    deleted connector can outlive it) is terminated; gives up with TimeoutError a minute after that."""
    deadline = time.monotonic() + timeout
    give_up = deadline + 60.0
    while True:
        row = conn.execute(
            "SELECT active, active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone()
        if row is None:
            break
        if not row[0]:
            with contextlib.suppress(psycopg.errors.ObjectInUse):  # a walsender took it again: next pass
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                continue
        elif time.monotonic() > deadline:
            conn.execute("SELECT pg_terminate_backend(%s)", (row[1],))
        if time.monotonic() > give_up:
            raise TimeoutError(f"replication slot {slot} is still held after {timeout + 60.0:.0f}s")
        time.sleep(POLL_S)
    if publication is not None:
        conn.execute(f'DROP PUBLICATION IF EXISTS "{publication}"')

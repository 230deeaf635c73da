"""SQLAlchemy engine and raw psycopg connections for the Postgres event store."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine, make_url

# Worker threads the API gives to command (database) work, each with its own pooled connection.
# Measured (2 cores, wrk -c32): 8 -> ~330 req/s, 16 -> ~350, 32 -> ~395; a command spends most of its
# time waiting on Postgres round trips (~0.3 ms each on this VM), so concurrency beats fewer threads.
DEFAULT_DB_THREADS = 32
# Pooled connections used beside the command threads: two tailers, checkpoints, health/read paths.
BACKGROUND_CONNECTIONS = 6


def make_engine(
    url: str,
    pool_size: int = 10,
    max_overflow: int = 10,
    application_name: str = "agentflow",
    pool_pre_ping: bool = False,
    **kwargs: Any,
) -> Engine:
    """Engine on ``postgresql+psycopg://``; psycopg prepares repeated statements server-side.

    Size ``pool_size`` to the steady-state number of threads using the engine: overflow connections
    are closed on check-in, so a pool smaller than the concurrency reconnects on every burst.
    ``pool_pre_ping`` costs a round trip per checkout; enable it for long-lived processes facing a
    server that may restart underneath them.
    """
    connect_args: dict[str, Any] = {"application_name": application_name, "prepare_threshold": 2}
    connect_args.update(kwargs.pop("connect_args", {}))
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=pool_pre_ping,
        connect_args=connect_args,
        **kwargs,
    )


def make_service_engine(url: str, threads: int = DEFAULT_DB_THREADS) -> Engine:
    """The embedded service's engine: one pooled connection per command thread plus the background
    users, so steady load never opens (and closes) overflow connections."""
    n = threads
    return make_engine(url, pool_size=n + BACKGROUND_CONNECTIONS, max_overflow=10, pool_use_lifo=True)


def libpq_conninfo(url: str) -> str:
    """``postgresql+psycopg://u@h:p/db`` -> ``postgresql://u@h:p/db`` (for raw psycopg)."""
    u = make_url(url).set(drivername="postgresql")
    return u.render_as_string(hide_password=False)


def connect_raw(url: str, autocommit: bool = True, **kwargs: Any) -> psycopg.Connection[Any]:
    """A dedicated psycopg connection outside the pool (LISTEN, COPY, long sessions)."""
    kwargs.setdefault("application_name", "agentflow-raw")
    return psycopg.connect(libpq_conninfo(url), autocommit=autocommit, **kwargs)


@contextmanager
def pooled_psycopg(engine: Engine) -> Iterator[psycopg.Connection[Any]]:
    """A pooled psycopg connection in autocommit, bypassing SQLAlchemy's execution layer (it more than
    doubled client CPU per statement on the hot paths); a broken connection leaves the pool."""
    raw = engine.raw_connection()
    try:
        pg: psycopg.Connection[Any] = raw.driver_connection  # type: ignore[assignment]
        pg.autocommit = True
        try:
            yield pg
        finally:
            if not pg.closed:
                pg.autocommit = False
    except psycopg.OperationalError:
        raw.invalidate()
        raise
    finally:
        raw.close()


class AutocommitStore:
    """Base of stores whose statements each stand alone: one autocommit round trip per call."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._ac = engine.execution_options(isolation_level="AUTOCOMMIT")

    def _one(self, sql: str, params: dict[str, Any]) -> Any:
        with self._ac.connect() as conn:
            return conn.exec_driver_sql(sql, params).first()

    def _all(self, sql: str, params: dict[str, Any]) -> list[Any]:
        with self._ac.connect() as conn:
            return list(conn.exec_driver_sql(sql, params).all())

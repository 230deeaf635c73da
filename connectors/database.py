"""SQLAlchemy engine and raw psycopg connections for the Postgres event store."""

from __future__ import annotations

from typing import Any

import psycopg
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine, make_url


def make_engine(
    url: str,
    pool_size: int = 10,
    max_overflow: int = 10,
    application_name: str = "agentflow",
    pool_pre_ping: bool = False,
    **kwargs: Any,
) -> Engine:
    """Engine on ``postgresql+psycopg://``; psycopg prepares repeated statements server-side.

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


def libpq_conninfo(url: str) -> str:
    """``postgresql+psycopg://u@h:p/db`` -> ``postgresql://u@h:p/db`` (for raw psycopg)."""
    u = make_url(url).set(drivername="postgresql")
    return u.render_as_string(hide_password=False)


def connect_raw(url: str, autocommit: bool = True, **kwargs: Any) -> psycopg.Connection[Any]:
    """A dedicated psycopg connection outside the pool (LISTEN, COPY, long sessions)."""
    kwargs.setdefault("application_name", "agentflow-raw")
    return psycopg.connect(libpq_conninfo(url), autocommit=autocommit, **kwargs)

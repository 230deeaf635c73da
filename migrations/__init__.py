"""Alembic migrations for the Postgres event store; ``run_migrations(url)`` needs no alembic.ini on disk."""

from __future__ import annotations


def run_migrations(url: str, revision: str = "head") -> None:
    from migrations.runner import run_migrations as _run

    _run(url, revision)


__all__ = ["run_migrations"]

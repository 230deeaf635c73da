"""The one chdb data path of a pytest process (chdb allows one per process), shared by test modules.

This module owns the path, so it owns the one store made from its DSN: every test store on the path
comes from it (``chdb_store``) and shares its client and lock. ``chdb_dsn`` is for what builds its own
store from settings (an in-process app); such a store is used while its test module runs.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

from connectors.clickhouse import ClickHouseStore

_root: list[ClickHouseStore] = []  # the store that owns this process's path, made on first use


def chdb_dsn() -> str:
    """One chdb path per process, shared by every test module of this process."""
    path = os.path.join(tempfile.gettempdir(), f"agentflow-test-chdb-{os.getpid()}")
    if not os.path.exists(path):
        os.makedirs(path)
        atexit.register(shutil.rmtree, path, True)
    return f"chdb://{path}"


def chdb_store(database: str) -> ClickHouseStore:
    """A store of ``database`` (schema ensured) on the process's chdb path."""
    if not _root:
        _root.append(ClickHouseStore(chdb_dsn(), database="agentflow_tests"))
    return _root[0].on_database(database)

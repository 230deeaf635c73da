"""The one chdb data path of a pytest process (chdb allows one per process), shared by test modules."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile


def chdb_dsn() -> str:
    """One chdb path per process, shared by every test module of this process."""
    path = os.path.join(tempfile.gettempdir(), f"agentflow-test-chdb-{os.getpid()}")
    if not os.path.exists(path):
        os.makedirs(path)
        atexit.register(shutil.rmtree, path, True)
    return f"chdb://{path}"

"""The benchmarks start servers with the tests' own helpers (tests/agentflow_process.py starts
``agentflow up``; tests/legacy_databases.py, tests/redis_server.py): they live in tests/, beside what
else is only for tests, and are imported with tests/ on sys.path."""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"


def use_test_helpers() -> None:
    """Put tests/ on sys.path (once)."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))

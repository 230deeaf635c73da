"""The layer rule of docs/architecture.md holds: the import-linter contracts in pyproject.toml are kept.

``domain`` imports nothing of ours; ``commands`` and ``projections`` import only ``domain``; none of the
three imports an infrastructure library (PyFlink only in projections/flink/); ``readmodels`` imports
neither ``connectors`` nor ``services`` nor a storage client; ``connectors`` never imports ``services``;
no two packages import each other both ways; ``migrations`` imports none of our packages.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_linter_contracts_are_kept() -> None:
    res = subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()",
         "--no-cache"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    report = res.stdout + res.stderr
    assert res.returncode == 0, report
    assert "Contracts: 5 kept, 0 broken." in report, report

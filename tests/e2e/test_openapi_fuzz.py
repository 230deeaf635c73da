"""Schemathesis against the live schema of a real ``agentflow up``: every operation, with its stateful
links, in positive and negative mode. No answer may be a server error, and every answer must be one the
operation documents, in the shape it documents (status code, content type and body schema).

The seed is fixed, so a run generates the same inputs every time; a failure prints schemathesis's own
report with the request that reproduces it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from agentflow_process import AgentFlowProcess

pytestmark = pytest.mark.timeout(1200)

KEY = "fuzz-key"
CONFIG = Path(__file__).with_name("schemathesis.toml")
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def test_every_operation_answers_as_its_schema_says(tmp_path: Path) -> None:
    srv = AgentFlowProcess(tmp_path / "af", f"{KEY}:tenant-fuzz", ("--no-iceberg",))
    try:
        srv.start()
        run = subprocess.run(
            [
                str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(CONFIG),
                "run", f"{srv.base}/schema/openapi.json",
                "--header", f"X-API-Key: {KEY}", "--checks", CHECKS,
                "--max-examples", "25", "--seed", "20261205",
                "--generation-database", "none", "--generation-with-security-parameters", "false",
                "--request-timeout", "60", "--workers", "1", "--no-color",
            ],
            capture_output=True, text=True, timeout=1100,
            cwd=tmp_path,  # schemathesis keeps a cache in its working directory
        )  # fmt: skip
        assert run.returncode == 0, run.stdout[-12000:] + run.stderr[-2000:]
    finally:
        srv.stop()

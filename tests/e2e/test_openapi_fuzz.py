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

pytestmark = pytest.mark.timeout(2400)

KEY = "fuzz-key"
CONFIG = Path(__file__).with_name("schemathesis.toml")  # seed, examples, the 503 rule, the stream
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def test_every_operation_answers_as_its_schema_says(tmp_path: Path) -> None:
    # an operator key: the admin routes are fuzzed too, not only their 403
    srv = AgentFlowProcess(tmp_path / "af", f"{KEY}:tenant-fuzz", ("--no-iceberg",),
                           env={"AGENTFLOW_OPERATOR_API_KEYS": KEY})  # fmt: skip
    report = tmp_path / "schemathesis.txt"
    try:
        srv.start()
        command = [
            str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(CONFIG),
            "run", f"{srv.base}/schema/openapi.json", "--header", f"X-API-Key: {KEY}", "--checks", CHECKS,
            "--no-color",
        ]  # fmt: skip
        with report.open("w") as out:
            # its working directory is tmp_path: schemathesis keeps a cache there
            code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path, timeout=2200)
        assert code.returncode == 0, report.read_text()[-12000:]
    except subprocess.TimeoutExpired:
        pytest.fail("schemathesis did not finish:\n" + report.read_text()[-12000:])
    finally:
        srv.stop()

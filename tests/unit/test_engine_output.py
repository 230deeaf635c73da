"""What an engine prints outside its log files reaches Python logging once per state
(services/distributed/output_relay.py); files here stand in for a JVM's ``NAME.out``."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from services.distributed.output_relay import OutputRelay


def test_new_lines_are_logged_once_per_text_partial_lines_wait_and_old_output_is_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "connect.out"
    out.write_text("written before the relay started\n")
    relay = OutputRelay({"connect": out, "flink": tmp_path / "not-yet.log"})
    with out.open("a") as f:
        for i in range(50):
            f.write(f"ERROR connection to node -1 (127.0.0.1:{9000 + i}) could not be established\n")
        f.write("java.lang.OutOfMemoryError: Java heap space\n")
        f.write("half a li")
    with caplog.at_level(logging.INFO, logger="agentflow.engines"):
        assert relay.relay_once() == 51
        with out.open("a") as f:
            f.write("ne\n")
        (tmp_path / "not-yet.log").write_text("Job has been submitted\n")
        assert relay.relay_once() == 2
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "OUT [connect] ERROR connection to node -1 (127.0.0.1:9000) could not be established",
        "OUT [connect] java.lang.OutOfMemoryError: Java heap space",
        "OUT [connect] half a line",
        "OUT [flink] Job has been submitted",
    ]
    levels = [r.levelno for r in caplog.records]
    assert levels == [logging.WARNING, logging.WARNING, logging.INFO, logging.INFO]

"""The alert rules pass Prometheus's own checker and unit tests (``promtool``, built from the Go module
proxy by tests/go_tools.py): deploy/prometheus/rules.yml parses and its expressions are valid PromQL,
and deploy/prometheus/rules_test.yml's synthetic series raise exactly the alerts it expects. (The live
scrape's ``promtool check metrics`` is in tests/e2e/test_prometheus_metrics.py.)"""

from __future__ import annotations

import subprocess

from go_tools import go_tool
from promql_names import RULES

RULES_TEST = RULES.parent / "rules_test.yml"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([go_tool("promtool"), *args], capture_output=True, text=True, timeout=300)


def test_rules_pass_promtool_check() -> None:
    done = _promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_rules_raise_the_alerts_their_unit_tests_expect() -> None:
    done = _promtool("test", "rules", str(RULES_TEST))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr

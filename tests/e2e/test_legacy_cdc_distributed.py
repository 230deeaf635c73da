"""Legacy CDC in the distributed deployment: the Debezium Postgres and MariaDB connectors on Kafka
Connect write Kafka topics the API process ingests (scenario: e2e/legacy_scenario.py). The restart
in the scenario restarts Kafka, Connect and Flink with ``agentflow up --distributed``."""

from __future__ import annotations

from pathlib import Path

import pytest
from agentflow_process import AgentFlowProcess
from legacy_databases import LegacyDatabase

from e2e.legacy_scenario import KEYS, SERVER_ENV, run_legacy_scenario

pytestmark = pytest.mark.timeout(1800)


def test_legacy_postgres_and_mariadb_are_captured_distributed(
    tmp_path: Path, server_tmp_path: Path, legacy_postgres: LegacyDatabase, legacy_mariadb: LegacyDatabase
) -> None:
    # agentflow's own Postgres runs as another OS user when we are root: its data outside pytest's tmp root
    srv = AgentFlowProcess(server_tmp_path / "data", KEYS, extra_args=("--distributed",), env=SERVER_ENV)
    try:
        srv.start(timeout=600)  # inside the try: a start that times out leaves a process to stop
        run_legacy_scenario(srv, legacy_postgres, legacy_mariadb, tmp_path, start_timeout=600)
    finally:
        srv.stop()

"""The ClickHouse store keeps the read-model store port's contract (tests/port_contracts/read_model_store.py)
on chdb, and on a ClickHouse server when AGENTFLOW_TEST_CLICKHOUSE_DSN names one (``http(s)://user:pw@
host:port``; a test knob read here only: no current server can be installed on this machine)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from chdb_store import chdb_store
from port_contracts.read_model_store import ReadModelStoreContract

from connectors.clickhouse import ClickHouseStore

SERVER_DSN = os.environ.get("AGENTFLOW_TEST_CLICKHOUSE_DSN")


class TestChdbStore(ReadModelStoreContract):
    @pytest.fixture()
    def store(self) -> Iterator[ClickHouseStore]:
        s = chdb_store(f"port_{uuid.uuid4().hex[:10]}")
        try:
            yield s
        finally:
            s.drop_all()


@pytest.mark.skipif(not SERVER_DSN, reason="AGENTFLOW_TEST_CLICKHOUSE_DSN names no ClickHouse server")
class TestClickHouseServerStore(ReadModelStoreContract):
    @pytest.fixture()
    def store(self) -> Iterator[ClickHouseStore]:
        assert SERVER_DSN is not None
        s = ClickHouseStore(SERVER_DSN, database=f"port_{uuid.uuid4().hex[:10]}")
        try:
            yield s
        finally:
            s.drop_all()
            s.close()

"""PostgresEventStore keeps the event-store port's contract (tests/port_contracts/event_store.py);
its own behaviour beyond the port (transaction ids, NOTIFY, races, appends in a caller's transaction)
is in test_event_store.py."""

from __future__ import annotations

import pytest
from port_contracts.event_store import EventStoreContract
from sqlalchemy.engine import Engine

from connectors.event_store import PostgresEventStore

pytestmark = pytest.mark.integration


class TestPostgresEventStore(EventStoreContract):
    @pytest.fixture()
    def store(self, engine: Engine) -> PostgresEventStore:
        return PostgresEventStore(engine)

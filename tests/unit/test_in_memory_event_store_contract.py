"""The in-memory fake keeps the event-store port's contract (tests/port_contracts/event_store.py)."""

from __future__ import annotations

import pytest
from fakes import InMemoryEventStore
from port_contracts.event_store import EventStoreContract


class TestInMemoryEventStore(EventStoreContract):
    @pytest.fixture()
    def store(self) -> InMemoryEventStore:
        return InMemoryEventStore()

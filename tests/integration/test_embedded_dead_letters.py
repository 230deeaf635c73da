"""The embedded pipeline validates like the Flink job: an invalid event is dead-lettered, not projected."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from chdb_store import chdb_store
from event_log import EventLog
from sqlalchemy.engine import Engine

from connectors.clickhouse import ClickHouseStore
from connectors.clickhouse_sink import ClickHouseSink
from connectors.dead_letters import DeadLetter, DeadLetterStore
from domain.events import RecordedEvent

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def store() -> Iterator[ClickHouseStore]:
    s = chdb_store("dead_letter_test")
    s.drop_all()
    s.ensure_schema()
    yield s
    s.drop_all()


def test_invalid_event_is_rejected_and_the_rest_applied(store: ClickHouseStore, engine: Engine) -> None:
    log = EventLog("t-dl")
    line = {"product_id": "PROD-001", "quantity": 2, "unit_price_minor": 500}
    log.add("ProductRegistered", "PROD-001", product_id="PROD-001", name="Mug", category="k",
            price_minor=500, currency="USD")  # fmt: skip
    good = log.add("OrderPlaced", "ORD-1", order_id="ORD-1", user_id="u", currency="USD", channel="web",
                   lines=[line], total_minor=1000)  # fmt: skip
    bad = log.add("OrderPlaced", "ORD-2", order_id="ORD-2", user_id="u", currency="USD", channel="web",
                  lines=[line], total_minor=1)  # fmt: skip
    events = log.events
    letters = DeadLetterStore(engine)
    rejected: list[tuple[RecordedEvent, str]] = []

    def reject(e: RecordedEvent, reason: str) -> None:
        rejected.append((e, reason))
        letters.add([DeadLetter("embedded", "validate", reason, event_id=str(e.event_id), position=e.position,
                                tenant_id=e.tenant_id, event_type=e.event_type)])  # fmt: skip

    sink = ClickHouseSink(store, None, reject=reject)
    sink.apply(events, None, 0)
    sink.apply(events, None, 0)  # a replay dead-letters nothing twice
    assert [e.position for e, _ in rejected] == [bad.position, bad.position]
    assert "sum of lines" in rejected[0][1]
    assert store.get_row("orders", ("t-dl", "ORD-2")) is None
    assert store.get_row("orders", ("t-dl", good.stream_id)) is not None
    stored = letters.list("t-dl")
    assert [(d.pipeline, d.stage, d.position) for d in stored] == [("embedded", "validate", bad.position)]
    assert letters.count("t-dl") == 1

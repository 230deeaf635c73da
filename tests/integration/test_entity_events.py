"""PostgresEventStore.read_entity_events_until applies the feeding rule of projections/feeds.py in SQL:
for every entity of a random shop history it returns exactly the events ``entity_events`` selects from
the whole log, as of any time."""

from __future__ import annotations

from datetime import timedelta

import pytest
from event_log import shop_log
from sqlalchemy.engine import Engine

from commands.ports import StreamWrite
from connectors.event_store import PostgresEventStore
from domain.events import NewEvent
from projections.feeds import ENTITY_TYPES, entity_events

pytestmark = pytest.mark.integration

T = "feeds"


@pytest.mark.parametrize("seed", [1, 2])
def test_the_store_reads_what_the_rule_selects(engine: Engine, seed: int) -> None:
    store = PostgresEventStore(engine)
    for e in shop_log(T, seed).events:  # one append per event: occurred_at increases along the log
        new = NewEvent(e.stream_type, e.stream_id, e.event_type, e.data, e.schema_version)
        store.append(T, [StreamWrite(e.stream_type, e.stream_id, e.stream_version - 1, [new])], {})
    log = store.read_all(0, 10_000, tenant_id=T)
    keys = sorted({(e.stream_type, e.stream_id) for e in log if e.stream_type in ENTITY_TYPES})
    cut = log[len(log) // 2].occurred_at
    for etype, eid in keys:
        for until, upto in ((log[-1].occurred_at + timedelta(seconds=1), log),
                            (cut, [e for e in log if e.occurred_at <= cut])):
            got = store.read_entity_events_until(T, etype, eid, until)
            assert [e.position for e in got] == [e.position for e in entity_events(etype, eid, upto)]

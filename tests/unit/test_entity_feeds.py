"""The one rule of which streams feed an entity (projections/feeds.py) is enough for a fold and for the
read cache: folding only the events it selects gives the entity the whole log gives, and an applied
event that changes an entity's data always drops that entity's cache entry."""

from __future__ import annotations

import pytest
from event_log import shop_log

from projections.entities import ENTITY_TABLES, fold_entity
from projections.feeds import ENTITY_TYPES, entity_events
from readmodels.read_cache import ReadCache

T = "t1"


def entities(log_events: list) -> list[tuple[str, str]]:
    return sorted({(e.stream_type, e.stream_id) for e in log_events if e.stream_type in ENTITY_TYPES})


def test_every_entity_type_has_a_read_model() -> None:
    assert set(ENTITY_TYPES) == set(ENTITY_TABLES)


@pytest.mark.parametrize("seed", range(6))
def test_the_selected_events_fold_to_the_same_entity(seed: int) -> None:
    log = shop_log(T, seed).events
    for etype, eid in entities(log):
        selected = entity_events(etype, eid, log)
        assert selected == sorted(selected, key=lambda e: e.position)
        assert fold_entity(etype, eid, selected) == fold_entity(etype, eid, log), (etype, eid)


@pytest.mark.parametrize("seed", range(4))
def test_an_event_that_changes_an_entity_drops_its_cache_entry(seed: int) -> None:
    log = shop_log(T, seed, steps=30).events
    keys = entities(log)
    cache = ReadCache({}, max_entries=10_000)
    for i, event in enumerate(log):
        before = {k: fold_entity(*k, log[:i]) for k in keys}
        for k in keys:
            cache.put_entity((T, *k), before[k], cache.generation())
        cache.invalidate([event])
        for k in keys:
            if fold_entity(*k, log[: i + 1]) != before[k]:
                assert cache.get_entity((T, *k)) is None, (event.event_type, k)

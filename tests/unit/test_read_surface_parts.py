"""Pure parts of the read surface: the applied-event hub, the search index and the SLO arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.events import RecordedEvent
from readmodels.applied_events import AppliedEventHub, EventFeed, EventFilter, StreamSlots
from readmodels.search import SearchIndex
from readmodels.slo import Objective, SloTracker

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def ev(pos: int, etype: str = "OrderConfirmed", stream: str = "order", sid: str = "ORD-1",
       tenant: str = "t", data: dict | None = None) -> RecordedEvent:  # fmt: skip
    return RecordedEvent(pos, tenant, stream, sid, pos, f"e{pos}", etype, 1, data or {}, T0, T0)


def test_hub_publishes_in_position_order_only_up_to_the_watermark() -> None:
    hub = AppliedEventHub(previous_watermark=lambda: 10)
    published: list[int] = []
    hub.add_listener(lambda events, wm: published.extend(e.position for e in events))
    hub.on_applied([ev(12)], 10)  # 12 committed before 11 (still in flight): held back
    assert published == []
    hub.on_applied([ev(11)], 12)
    hub.on_applied([ev(13), ev(14)], 14)
    assert published == [11, 12, 13, 14]
    got = hub.since(11)
    assert got is not None and [a.event.position for a in got[0]] == [12, 13, 14] and got[1] == 14
    assert hub.since(5) is None  # before the buffer: replay from the store
    assert hub.since(14) == ([], 14)
    hub.on_applied([ev(13)], 14)  # a re-applied event is not published twice
    assert published == [11, 12, 13, 14]
    assert set(hub.applied_at([12, 14, 99])) == {12, 14}


def test_hub_buffer_is_bounded_and_says_what_it_no_longer_covers() -> None:
    hub = AppliedEventHub(capacity=3)
    hub.on_applied([ev(p) for p in range(1, 7)], 6)
    assert hub.since(2) is None
    got = hub.since(3)
    assert got is not None and [a.event.position for a in got[0]] == [4, 5, 6]


class _Log:
    """An event store of events in position order (readmodels.ports.EventLog)."""

    def __init__(self, events: list[RecordedEvent]) -> None:
        self.events = events
        self.reads: list[tuple[int, int | None]] = []

    def read_all(
        self,
        after_position: int = 0,
        limit: int = 1000,
        tenant_id: str | None = None,
        until: datetime | None = None,
        max_position: int | None = None,
    ) -> list[RecordedEvent]:
        self.reads.append((after_position, max_position))
        bound = max_position if max_position is not None else 1 << 62
        found = [e for e in self.events
                 if after_position < e.position <= bound and tenant_id in (None, e.tenant_id)]  # fmt: skip
        return found[:limit]


class _Progress:
    watermark = 0
    lake_watermark = None
    mode = "embedded"

    def freshness_seconds(self) -> float:
        return 0.0

    def flush_serving(self) -> None:
        pass


def test_event_feed_reads_the_buffer_or_replays_the_store_never_past_the_watermark() -> None:
    events = [ev(p, tenant="t" if p % 2 else "u") for p in range(1, 11)]
    log = _Log(events)
    hub = AppliedEventHub(capacity=3, previous_watermark=lambda: 0)
    feed = EventFeed(hub, log, _Progress(), page=2)
    assert feed.bound() == 0 and feed.poll("t", 0) == ([], 0)  # the hub has published nothing yet
    hub.on_applied(events[:8], 8)  # the buffer keeps 6, 7, 8 (all tenants)
    assert feed.bound() == 8
    assert feed.poll("t", 2) is None  # the buffer no longer covers 2: replay from the store
    page, cursor = feed.replay("t", 2)
    assert [e.position for e in page] == [3, 5] and cursor == 5 and log.reads == [(2, 8)]
    page, cursor = feed.replay("t", cursor)  # a short page: the reader has seen up to the bound
    assert [e.position for e in page] == [7] and cursor == 8
    got = feed.poll("t", 5)  # a page of the buffer (6 is u's)
    assert got is not None and [e.position for e in got[0]] == [7] and got[1] == 7
    assert feed.poll("t", 7) == ([], 8)  # 8 is u's
    assert feed.poll("t", 8) == ([], 8)  # 9 and 10 are not applied: never sent


def test_event_filter() -> None:
    f = EventFilter("order,StockReleased", None, "ORD-1")
    assert f.matches(ev(1))
    assert f.matches(ev(2, "StockReleased", "product", "PROD-1", data={"order_id": "ORD-1"}))
    assert not f.matches(ev(3, "StockReceived", "product", "PROD-1", data={"order_id": "ORD-1"}))
    assert not EventFilter(None, "order", "ORD-1").matches(
        ev(4, "StockReleased", "product", "P", data={"order_id": "ORD-1"})
    )
    assert EventFilter("inventory", None, None).matches(ev(5, "StockReceived", "product", "P"))
    slots = StreamSlots(1)
    assert slots.acquire("a") and not slots.acquire("a") and slots.acquire("b")
    slots.release("a")
    assert slots.acquire("a")


def test_search_seeds_rows_then_follows_events_without_regressing() -> None:
    idx = SearchIndex()
    assert idx.start("t")
    idx.apply([ev(5, "OrderShipped")], 5)  # applied while seeding: newer than the row below
    idx.seed("t", "order", [("ORD-1", 4, {"status": "confirmed", "user_id": "USR-1", "channel": "web"})])
    idx.seeded("t")
    hit = idx.search("t", "ORD-1 shipped")[0]
    assert hit["id"] == "ORD-1" and "shipped" in hit["snippet"] and "USR-1" in hit["snippet"]
    idx.apply([ev(3, "OrderCancelled")], 5)  # older than the doc: ignored
    assert "shipped" in idx.search("t", "ORD-1")[0]["snippet"]
    idx.apply([ev(6, "UserRegistered", "user", "USR-7", data={"name": "Grace Hopper", "email": "g@x.io"})], 6)
    assert idx.search("t", "g@x.io")[0]["id"] == "USR-7"
    assert idx.search("other", "g@x.io") == [] or idx.search("other", "g@x.io")[0]["type"] != "entity"
    assert idx.search("t", "hopp")[0]["id"] == "USR-7"  # prefix
    assert idx.search("t", "revenue")[0]["type"] == "metric"
    assert all(r["type"] != "metric" for r in idx.search("t", "revenue", entity_types={"order"}))


def test_slo_budget_and_burn_rates() -> None:
    now = [1_000_000.0]
    o = Objective("lat", "", "latency:read", 0.9, 100.0, window_hours=24)
    tracker = SloTracker([o, Objective("fresh", "", "freshness", 0.99, 2.0)], clock=lambda: now[0])
    for _ in range(18):
        tracker.record_request("read", 200, 0.01, command=False)
    for _ in range(2):
        tracker.record_request("read", 200, 0.5, command=False)
    rec = datetime.fromtimestamp(now[0], UTC) - timedelta(seconds=5)
    tracker.record_applied([RecordedEvent(1, "t", "order", "O", 1, "e", "OrderPlaced", 1, {}, rec, rec)])
    report = {s["name"]: s for s in tracker.report()["slos"]}
    lat = report["lat"]
    assert lat["events"] == {"total": 20, "good": 18, "bad": 2}
    assert lat["current"] == 0.9 and lat["error_budget_remaining"] == 0.0
    assert lat["burn_rates"]["1h"] == 1.0 and lat["status"] == "at_risk"
    assert report["fresh"]["events"]["bad"] == 1 and report["fresh"]["status"] == "breached"
    now[0] += 2 * 3600  # the 1h burn window has moved past those requests, the 24h window has not
    lat = {s["name"]: s for s in tracker.report()["slos"]}["lat"]
    assert lat["burn_rates"]["1h"] is None and lat["events"]["total"] == 20

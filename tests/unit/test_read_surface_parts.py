"""Pure parts of the read surface: the applied-event hub, the search index and the SLO arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.events import RecordedEvent
from services.event_stream import AppliedEventHub, EventFilter, StreamSlots
from services.search_index import SearchIndex
from services.slo import Objective, SloTracker

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

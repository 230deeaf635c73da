from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain import session as s
from domain.errors import DomainError

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@dataclass
class Ev:
    event_type: str
    data: dict[str, Any]
    occurred_at: datetime = field(default=T0)


def ev(kind: str, seconds: int, page: str = "/", user: str | None = None) -> Ev:
    data = {"session_id": "SES-1", "user_id": user, "page_url": page, "product_id": None}
    return Ev(kind, data, T0 + timedelta(seconds=seconds))


def test_funnel_order_and_conversion() -> None:
    assert s.FUNNEL_STAGES == ("browse", "engaged", "cart", "checkout")
    assert s.furthest_stage(None, "PageViewed") == "browse"
    assert s.furthest_stage("cart", "PageViewed") == "cart"
    assert s.furthest_stage("engaged", "ItemAddedToCart") == "cart"
    assert s.furthest_stage("cart", "OrderPlaced") == "cart"
    assert s.is_conversion("checkout") and not s.is_conversion("cart") and not s.is_conversion(None)
    assert s.API_EVENT_TYPES["checkout"] == s.API_EVENT_TYPES["checkout_started"] == s.CONVERSION_EVENT


def test_fold_session_summary() -> None:
    summary = s.fold_session(
        [
            ev("PageViewed", 0, "/home"),
            ev("ElementClicked", 10, "/home", user="USR-00001"),
            ev("ItemAddedToCart", 30, "/p/1"),
            ev("PageViewed", 40, "/home"),
            ev("CheckoutStarted", 95, "/checkout"),
        ]
    )
    assert summary == {
        "session_id": "SES-1",
        "user_id": "USR-00001",
        "started_at": T0,
        "ended_at": T0 + timedelta(seconds=95),
        "duration_seconds": 95.0,
        "event_count": 5,
        "unique_pages": 3,
        "funnel_stage": "checkout",
        "is_conversion": True,
    }


def test_fold_ignores_unrelated_events_and_out_of_order_times() -> None:
    summary = s.fold_session([ev("ItemAddedToCart", 50), ev("PageViewed", 5), ev("OrderPlaced", 99)])
    assert summary["started_at"] == T0 + timedelta(seconds=5)
    assert summary["event_count"] == 2
    assert summary["funnel_stage"] == "cart"
    assert summary["is_conversion"] is False


def test_active_window() -> None:
    last = T0
    assert s.is_active(last, T0 + timedelta(seconds=s.ACTIVE_WINDOW_SECONDS))
    assert not s.is_active(last, T0 + timedelta(seconds=s.ACTIVE_WINDOW_SECONDS + 1))
    assert not s.is_active(None, T0)
    sess = s.Session.fold([ev("PageViewed", 0)])
    assert sess.is_active(T0 + timedelta(seconds=10))


def test_decide_record_keeps_user() -> None:
    sess = s.Session.fold([ev("PageViewed", 0, user="USR-1")])
    [e] = sess.decide_record("SES-1", "ElementClicked", None, "/x", "PROD-001")
    assert e.data == {"session_id": "SES-1", "user_id": "USR-1", "page_url": "/x", "product_id": "PROD-001"}
    with pytest.raises(DomainError) as exc:
        sess.decide_record("SES-1", "ElementClicked", "USR-2", "/x", None)
    assert exc.value.code == "session_user_mismatch"
    with pytest.raises(DomainError):
        sess.decide_record("SES-1", "OrderPlaced", None, "/x", None)

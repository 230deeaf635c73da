import pytest

from domain import upcasting
from domain.events import EVENT_TYPES
from domain.order import Order
from domain.upcasting import upcast

V1 = {
    "order_id": "ORD-20230101-0001",
    "user_id": "USR-00001",
    "currency": "USD",
    "channel": "web",
    "lines": [
        {"product_id": "PROD-001", "quantity": 2, "unit_price": "19.99"},
        {"product_id": "PROD-002", "quantity": 1, "unit_price": "0.10"},
    ],
}


def test_order_placed_v1_to_v2() -> None:
    version, data = upcast("OrderPlaced", 1, V1)
    assert version == EVENT_TYPES["OrderPlaced"][1] == 2
    assert data["lines"] == [
        {"product_id": "PROD-001", "quantity": 2, "unit_price_minor": 1999},
        {"product_id": "PROD-002", "quantity": 1, "unit_price_minor": 10},
    ]
    assert data["total_minor"] == 2 * 1999 + 10
    assert set(data) == set(EVENT_TYPES["OrderPlaced"][2])
    assert "total_minor" not in V1 and "unit_price" in V1["lines"][0]  # input untouched


def test_v1_without_channel_gets_none() -> None:
    data = {k: v for k, v in V1.items() if k != "channel"}
    _, out = upcast("OrderPlaced", 1, data)
    assert out["channel"] is None


def test_upcast_current_is_identity_and_folds() -> None:
    _, v2 = upcast("OrderPlaced", 1, V1)
    assert upcast("OrderPlaced", 2, v2) == (2, v2)
    assert upcast("OrderConfirmed", 1, {"order_id": "x"}) == (1, {"order_id": "x"})

    class E:
        event_type = "OrderPlaced"
        data = v2

    assert Order.fold([E()]).total_minor == 4008


def test_upcast_errors() -> None:
    with pytest.raises(ValueError, match="newer"):
        upcast("OrderPlaced", 3, {})
    with pytest.raises(ValueError, match="no upcaster"):
        upcast("OrderPlaced", 0, {})


def test_registered_upcasters_reach_current_versions() -> None:
    for event_type, from_version in upcasting.UPCASTERS:
        assert from_version < EVENT_TYPES[event_type][1]


def test_order_refunded_v1_returned_nothing() -> None:
    v1 = {"order_id": "ORD-1", "amount_minor": 500, "currency": "USD", "refunded_total_minor": 500,
          "full": True}
    version, data = upcast("OrderRefunded", 1, v1)
    assert version == EVENT_TYPES["OrderRefunded"][1] == 2
    assert data == {**v1, "lines": [], "restock": False}
    assert set(data) == set(EVENT_TYPES["OrderRefunded"][2])

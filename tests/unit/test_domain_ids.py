from datetime import UTC, date, datetime

import pytest

from domain import ids


def test_generated_formats() -> None:
    day = datetime(2024, 3, 7, 23, 59, tzinfo=UTC)
    assert ids.order_id(42, day) == "ORD-20240307-0042"
    assert ids.payment_id(7, date(2024, 1, 2)) == "PAY-20240102-0007"
    assert ids.order_id(123456, day) == "ORD-20240307-123456"
    assert ids.user_id(12) == "USR-00012"
    assert ids.product_id(5) == "PROD-005"
    assert ids.product_id(12345) == "PROD-12345"
    assert ids.ORDER_ID_RE.fullmatch(ids.generate("order", 1, day))
    assert ids.PAYMENT_ID_RE.fullmatch(ids.generate("payment", 1, day))
    assert ids.USER_ID_RE.fullmatch(ids.generate("user", 1, day))
    assert ids.PRODUCT_ID_RE.fullmatch(ids.generate("product", 1, day))
    assert ids.SESSION_ID_RE.fullmatch(ids.new_session_id())
    assert ids.new_session_id() != ids.new_session_id()
    with pytest.raises(ValueError):
        ids.generate("widget", 1, day)


@pytest.mark.parametrize("value", ["ORD-20240101-0001", "a", "x" * 64, "legacy:42", "a.b_c-d"])
def test_valid_ids(value: str) -> None:
    assert ids.validate_id(value)
    assert ids.require_id(value) == value


@pytest.mark.parametrize("value", ["", "x" * 65, "has space", "slash/id", "ünï", None, 5, "a\n"])
def test_invalid_ids(value: object) -> None:
    assert not ids.validate_id(value)
    with pytest.raises(ValueError):
        ids.require_id(value)

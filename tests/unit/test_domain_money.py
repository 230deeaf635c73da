from decimal import Decimal

import pytest

from domain.money import Money, format_major, parse_amount, parse_decimal, to_major


@pytest.mark.parametrize(
    ("value", "currency", "expected"),
    [
        ("19.99", "USD", 1999),
        (19.99, "USD", 1999),
        (0.1, "USD", 10),
        ("0.10", "EUR", 10),
        (5, "GBP", 500),
        ("1e2", "USD", 10000),
        ("19.990", "USD", 1999),
        (" 3.5 ", "RUB", 350),
        (1500, "JPY", 1500),
        ("0", "USD", 0),
        (Decimal("2.25"), "USD", 225),
    ],
)
def test_parse_amount(value: object, currency: str, expected: int) -> None:
    assert parse_amount(value, currency) == expected


def test_decimal_sums_are_exact() -> None:
    assert parse_amount("0.1", "USD") + parse_amount("0.2", "USD") == parse_amount("0.3", "USD") == 30
    assert parse_amount(0.1, "USD") + parse_amount(0.2, "USD") == 30
    # the float sum itself is not a 2-decimal amount and is refused rather than rounded
    with pytest.raises(ValueError, match="decimal places"):
        parse_amount(0.1 + 0.2, "USD")


@pytest.mark.parametrize(
    ("value", "currency", "match"),
    [
        ("1.999", "USD", "at most 2 decimal places"),
        ("1.5", "JPY", "at most 0 decimal places"),
        ("-1", "USD", "negative"),
        ("NaN", "USD", "finite"),
        ("Infinity", "USD", "finite"),
        (float("nan"), "USD", "finite"),
        ("abc", "USD", "not a number"),
        ("1,000", "USD", "not a number"),
        ("", "USD", "blank"),
        (True, "USD", "decimal number"),
        (None, "USD", "decimal number"),
        ([1], "USD", "decimal number"),
        ("1", "XXX", "unknown currency"),
        ("1e20", "USD", "too large"),
    ],
)
def test_parse_amount_rejects(value: object, currency: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_amount(value, currency)


def test_zero_and_negative_flags() -> None:
    with pytest.raises(ValueError, match="greater than zero"):
        parse_amount("0.00", "USD", allow_zero=False)
    assert parse_amount("-2.50", "USD", allow_negative=True) == -250


def test_parse_decimal_keeps_float_repr() -> None:
    assert parse_decimal(19.99) == Decimal("19.99")


def test_to_major_and_format() -> None:
    assert to_major(1999, "USD") == 19.99
    assert to_major(1500, "JPY") == 1500.0
    assert format_major(1990, "EUR") == "19.90"
    assert format_major(5, "JPY") == "5"


def test_money_arithmetic_refuses_mixed_currencies() -> None:
    a = Money.parse("1.25", "USD")
    assert (a + Money(75, "USD")) == Money(200, "USD")
    assert (a * 3).amount_minor == 375
    assert str(a - Money(25, "USD")) == "1.00 USD"
    with pytest.raises(ValueError, match="currency mismatch"):
        _ = a + Money(1, "EUR")
    with pytest.raises(ValueError):
        Money(1, "ZZZ")
    with pytest.raises(TypeError):
        Money(1.5, "USD")  # type: ignore[arg-type]

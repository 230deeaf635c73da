"""The command bodies' schema (docs/openapi.json, which tests/integration/api/test_openapi.py holds equal
to the served one) admits only what the commands take: a value drawn from a field's documented schema
passes the command's own validation (commands/validation.py, domain/money.py)."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from commands.validation import Fields
from domain.ids import validate_id
from domain.money import CURRENCY_EXPONENTS, parse_amount
from services.api.routes.commands import parse_if_match

DOC = json.loads((Path(__file__).resolve().parents[2] / "docs" / "openapi.json").read_text())
SCHEMAS: dict[str, Any] = DOC["components"]["schemas"]
# the currencies whose digits the amount schema allows (the finest ones)
FINEST = [code for code, exp in CURRENCY_EXPONENTS.items() if exp == max(CURRENCY_EXPONENTS.values())]


def _field(body: str, name: str) -> dict[str, Any]:
    field: dict[str, Any] = SCHEMAS[body]["properties"][name]
    return field


def _amounts(field: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A decimal string from the pattern, or a number on the schema's grid within its bounds."""
    text, number = field["oneOf"]
    step = Fraction(str(number["multipleOf"]))
    low = 1 if "exclusiveMinimum" in number else 0
    high = int(Fraction(number["maximum"]) / step)
    numbers = st.integers(low, high).map(lambda k: float(k * step))  # as a JSON number reads back
    return st.from_regex(text["pattern"], fullmatch=True) | numbers


@settings(max_examples=400, deadline=None)
@given(_amounts(_field("RegisterProduct", "price")), _amounts(_field("InitiatePayment", "amount")))
def test_an_amount_the_schema_admits_is_one_the_commands_take(price: Any, amount: Any) -> None:
    for currency in FINEST:
        assert parse_amount(price, currency) >= 0
        assert parse_amount(amount, currency, allow_zero=False) > 0


def test_the_amount_schema_reaches_the_largest_amount() -> None:
    _, number = _field("RegisterProduct", "price")["oneOf"]
    for currency in FINEST:
        assert parse_amount(number["maximum"], currency) > 0
        assert parse_amount("9" * 13 + ".99", currency) > 0


def _texts(field: dict[str, Any]) -> st.SearchStrategy[str]:
    return st.from_regex(field["pattern"], fullmatch=True).filter(lambda s: len(s) <= field["maxLength"])


@settings(max_examples=200, deadline=None)
@given(name=_texts(_field("RegisterProduct", "name")), page_url=_texts(_field("SessionEvent", "page_url")))
def test_a_text_the_schema_admits_is_one_the_commands_take(name: str, page_url: str) -> None:
    f = Fields({"name": name, "page_url": page_url})
    assert f.text("name", max_len=_field("RegisterProduct", "name")["maxLength"]) is not None
    assert f.text("page_url", max_len=_field("SessionEvent", "page_url")["maxLength"]) is not None
    assert f.errors == []


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_an_id_the_schema_admits_is_one_the_commands_take(data: st.DataObject) -> None:
    field = _field("PlaceOrder", "user_id")
    assert validate_id(data.draw(st.from_regex(field["pattern"], fullmatch=True)))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_an_if_match_the_schema_admits_is_one_the_commands_take(data: st.DataObject) -> None:
    (param,) = [p for p in DOC["paths"]["/v1/orders/{order_id}/confirm"]["post"]["parameters"]
                if p["name"] == "If-Match"]  # fmt: skip
    value = data.draw(st.from_regex(param["schema"]["pattern"], fullmatch=True))
    version = parse_if_match(value)
    assert version is None or version >= 0

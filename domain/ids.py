"""Identifier formats (API.md): generated ids follow the legacy formats, any safe id is accepted."""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime

MAX_ID_LENGTH = 64
SAFE_ID = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_ID_LENGTH}}}")  # the API schema documents it too

ORDER_ID_RE = re.compile(r"ORD-\d{8}-\d{4,}")
PAYMENT_ID_RE = re.compile(r"PAY-\d{8}-\d{4,}")
USER_ID_RE = re.compile(r"USR-\d{5,}")
PRODUCT_ID_RE = re.compile(r"PROD-\d{3,}")
SESSION_ID_RE = re.compile(r"SES-[0-9a-f]+")

# store.next_id kinds
ORDER_KIND = "order"
PAYMENT_KIND = "payment"
PRODUCT_KIND = "product"
USER_KIND = "user"


def validate_id(value: object) -> bool:
    """True for a non-empty id of at most 64 characters from [A-Za-z0-9._:-]."""
    return isinstance(value, str) and SAFE_ID.fullmatch(value) is not None


def require_id(value: object, what: str = "id") -> str:
    if not validate_id(value):
        raise ValueError(f"{what} must be 1-{MAX_ID_LENGTH} characters of A-Z a-z 0-9 . _ : -")
    assert isinstance(value, str)
    return value


def _day(on: date | datetime) -> str:
    return on.strftime("%Y%m%d")


def order_id(number: int, on: date | datetime) -> str:
    return f"ORD-{_day(on)}-{number:04d}"


def payment_id(number: int, on: date | datetime) -> str:
    return f"PAY-{_day(on)}-{number:04d}"


def user_id(number: int) -> str:
    return f"USR-{number:05d}"


def product_id(number: int) -> str:
    return f"PROD-{number:03d}"


def new_session_id() -> str:
    return f"SES-{uuid.uuid4().hex}"


def generate(kind: str, number: int, on: date | datetime) -> str:
    """The generated id for a store.next_id kind."""
    if kind == ORDER_KIND:
        return order_id(number, on)
    if kind == PAYMENT_KIND:
        return payment_id(number, on)
    if kind == USER_KIND:
        return user_id(number)
    if kind == PRODUCT_KIND:
        return product_id(number)
    raise ValueError(f"unknown id kind {kind!r}")

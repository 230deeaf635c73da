"""Payload validation that collects every field error before rejecting (HTTP 422)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from domain.ids import MAX_ID_LENGTH, validate_id
from domain.money import is_known_currency, parse_amount, parse_decimal

_MISSING = object()
MAX_TEXT = 200  # a text field's limit unless its command says otherwise


class InvalidCommand(Exception):
    """Malformed command input; ``errors`` lists every ``{field, message}``."""

    code = "validation_error"

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors) or "invalid command")

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": str(self), "details": self.errors}


class Fields:
    """Typed reads from one JSON object; errors accumulate (nested objects share the list)."""

    def __init__(self, payload: object, prefix: str = "", errors: list[dict[str, str]] | None = None) -> None:
        self.errors: list[dict[str, str]] = [] if errors is None else errors
        self.prefix = prefix
        if payload is None:
            payload = {}
        if not isinstance(payload, dict):
            self.error("", "must be a JSON object")
            payload = {}
        self.payload: dict[str, Any] = payload

    def name(self, field: str) -> str:
        if not field:
            return self.prefix or "body"
        return f"{self.prefix}.{field}" if self.prefix else field

    def error(self, field: str, message: str) -> None:
        self.errors.append({"field": self.name(field), "message": message})

    def raise_if_invalid(self) -> None:
        if self.errors:
            raise InvalidCommand(self.errors)

    def _get(self, field: str, required: bool) -> Any:
        value = self.payload.get(field, _MISSING)
        if value is None and not required:
            return _MISSING
        if value is _MISSING or value is None:
            if required:
                self.error(field, "is required")
            return _MISSING
        return value

    def text(self, field: str, *, required: bool = True, max_len: int = MAX_TEXT) -> str | None:
        value = self._get(field, required)
        if value is _MISSING:
            return None
        if not isinstance(value, str):
            self.error(field, "must be a string")
            return None
        value = value.strip()
        if not value:
            if required:
                self.error(field, "must not be blank")
            return None
        if len(value) > max_len:
            self.error(field, f"must be at most {max_len} characters")
            return None
        return value

    def ident(self, field: str, *, required: bool = True) -> str | None:
        value = self._get(field, required)
        if value is _MISSING:
            return None
        if not validate_id(value):
            self.error(field, f"must be a non-empty id of at most {MAX_ID_LENGTH} characters [A-Za-z0-9._:-]")
            return None
        assert isinstance(value, str)
        return value

    def integer(self, field: str, *, required: bool = True) -> int | None:
        value = self._get(field, required)
        if value is _MISSING:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(field, "must be an integer")
            return None
        return value

    def currency(self, field: str = "currency") -> str | None:
        value = self._get(field, True)
        if value is _MISSING:
            return None
        if not isinstance(value, str):
            self.error(field, "must be a string")
            return None
        code = value.strip().upper()
        if not is_known_currency(code):
            self.error(field, f"unknown currency {value!r}")
            return None
        return code

    def decimal(self, field: str, *, positive: bool = False) -> Decimal | None:
        """A numeric major-unit amount whose currency is not known yet (checked later)."""
        value = self._get(field, True)
        if value is _MISSING:
            return None
        try:
            dec = parse_decimal(value)
        except ValueError as exc:
            self.error(field, str(exc))
            return None
        if dec < 0 or (positive and dec == 0):
            self.error(field, "must be greater than zero" if positive else "must not be negative")
            return None
        return dec

    def amount(self, field: str, currency: str | None, *, allow_zero: bool = True) -> int | None:
        """Minor units when the currency is valid; otherwise only the number's shape is checked."""
        if currency is None:
            self.decimal(field, positive=not allow_zero)
            return None
        value = self._get(field, True)
        if value is _MISSING:
            return None
        try:
            return parse_amount(value, currency, allow_zero=allow_zero)
        except ValueError as exc:
            self.error(field, str(exc))
            return None

    def choice(self, field: str, options: tuple[str, ...] | frozenset[str] | list[str]) -> str | None:
        value = self._get(field, True)
        if value is _MISSING:
            return None
        if not isinstance(value, str) or value not in options:
            self.error(field, f"must be one of {', '.join(sorted(options))}")
            return None
        return value

    def boolean(self, field: str, *, default: bool) -> bool:
        value = self._get(field, False)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            self.error(field, "must be true or false")
            return default
        return value

    def objects(self, field: str, *, min_items: int, max_items: int, required: bool = True) -> list[Fields]:
        value = self._get(field, required)
        if value is _MISSING:
            return []
        if not isinstance(value, list):
            self.error(field, "must be a list")
            return []
        if not min_items <= len(value) <= max_items:
            self.error(field, f"must have {min_items}-{max_items} items")
            return []
        items = []
        for i, item in enumerate(value):
            if isinstance(item, dict):
                items.append(Fields(item, f"{self.name(field)}[{i}]", self.errors))
            else:
                self.errors.append({"field": f"{self.name(field)}[{i}]", "message": "must be a JSON object"})
        return items


def minor_for(field: str, value: Decimal, currency: str) -> int:
    """Convert an already shape-checked amount once the entity's currency is known."""
    try:
        return parse_amount(value, currency)
    except ValueError as exc:
        raise InvalidCommand([{"field": field, "message": str(exc)}]) from None

"""Money as integer minor units plus an ISO currency; decimal parsing without float error."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

# ISO 4217 code -> minor-unit exponent
CURRENCY_EXPONENTS: dict[str, int] = {
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "RUB": 2,
    "CHF": 2,
    "CAD": 2,
    "AUD": 2,
    "CNY": 2,
    "INR": 2,
    "SEK": 2,
    "PLN": 2,
    "BRL": 2,
    "JPY": 0,
    "KRW": 0,
}

# refuse absurd amounts (keeps everything inside Int64 with room for sums)
MAX_MINOR = 10**15


def is_known_currency(currency: object) -> bool:
    return isinstance(currency, str) and currency in CURRENCY_EXPONENTS


def exponent(currency: str) -> int:
    try:
        return CURRENCY_EXPONENTS[currency]
    except KeyError:
        raise ValueError(f"unknown currency {currency!r}") from None


def parse_decimal(value: object) -> Decimal:
    """A finite decimal from a JSON number or numeric string (no bools, NaN, infinities)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValueError("must be a decimal number or numeric string")
    if isinstance(value, float):
        # repr is the shortest round-tripping form: 19.99 -> "19.99", not 19.989999...
        text = repr(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError("must not be blank")
    else:
        text = str(value)
    try:
        dec = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a number") from None
    if not dec.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    return dec


def parse_amount(
    value: object, currency: str, *, allow_zero: bool = True, allow_negative: bool = False
) -> int:
    """Major-unit amount (JSON number or string) -> integer minor units of ``currency``.

    Raises ValueError for non-numeric input, NaN/infinity, negatives (unless allowed), zero (unless
    allowed) and more decimal places than the currency has ("1.999" USD); never rounds.
    """
    exp = exponent(currency)
    dec = parse_decimal(value)
    if dec < 0 and not allow_negative:
        raise ValueError("must not be negative")
    if dec == 0 and not allow_zero:
        raise ValueError("must be greater than zero")
    scaled = dec.scaleb(exp)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{currency} allows at most {exp} decimal places")
    minor = int(scaled)
    if abs(minor) > MAX_MINOR:
        raise ValueError("amount is too large")
    return minor


def to_decimal(minor: int, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-exponent(currency))


def to_major(minor: int, currency: str) -> float:
    """Minor units -> float major units (for the wire; sums must stay in minor units)."""
    return float(to_decimal(minor, currency))


def format_major(minor: int, currency: str) -> str:
    """Minor units -> exact major-unit string with the currency's decimals ("19.90")."""
    exp = exponent(currency)
    return f"{to_decimal(minor, currency):.{exp}f}"


@dataclass(frozen=True, slots=True)
class Money:
    amount_minor: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.amount_minor, bool) or not isinstance(self.amount_minor, int):
            raise TypeError("amount_minor must be an int")
        exponent(self.currency)

    @classmethod
    def parse(cls, value: object, currency: str) -> Money:
        return cls(parse_amount(value, currency), currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise ValueError(f"currency mismatch: {self.currency} vs {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount_minor + other.amount_minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount_minor - other.amount_minor, self.currency)

    def __mul__(self, factor: int) -> Money:
        return Money(self.amount_minor * factor, self.currency)

    def to_major(self) -> float:
        return to_major(self.amount_minor, self.currency)

    def __str__(self) -> str:
        return f"{format_major(self.amount_minor, self.currency)} {self.currency}"

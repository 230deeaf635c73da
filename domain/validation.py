"""Event validation for pipelines that receive events they did not decide (CDC, replays, legacy).

Command handlers only append events their aggregates decided, so these checks never fail for them;
an event written straight into the store (or mangled on the way) is caught here and dead-lettered
with the reasons instead of corrupting a read model. Checks are stateless: schema (known type,
stream type, exact fields at the current version) and the semantic rules that need no other event
(ids match the stream, money is non-negative integer minor units in a known currency, quantities in
range, an order total equals the sum of its lines).
"""

from __future__ import annotations

from typing import Any

from domain.events import EVENT_TYPES
from domain.money import MAX_MINOR, is_known_currency
from domain.order import MAX_LINES, MAX_QUANTITY, MIN_QUANTITY
from domain.product import ADJUST_REASONS, MAX_RESTOCK

# stream type -> the data field that must equal the stream id
_OWN_ID = {
    "order": "order_id",
    "payment": "payment_id",
    "product": "product_id",
    "user": "user_id",
    "session": "session_id",
}
# fields that must be > 0 (the rest of *_minor fields must be >= 0)
_POSITIVE = {"amount_minor", "quantity", "requested"}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def event_problems(
    event_type: str, stream_type: str, stream_id: str, schema_version: int, data: Any
) -> list[str]:
    """Every reason the (already upcast) event is invalid; empty when it is valid."""
    spec = EVENT_TYPES.get(event_type)
    if spec is None:
        return [f"unknown event type {event_type!r}"]
    expected_stream, version, fields = spec
    problems: list[str] = []
    if stream_type != expected_stream:
        problems.append(f"{event_type} belongs to stream type {expected_stream!r}, not {stream_type!r}")
    if schema_version != version:
        problems.append(f"{event_type} schema_version {schema_version} != current {version}")
    if not isinstance(data, dict):
        return [*problems, "data is not an object"]
    missing = sorted(set(fields) - set(data))
    extra = sorted(set(data) - set(fields))
    if missing:
        problems.append(f"missing fields {missing}")
    if extra:
        problems.append(f"unexpected fields {extra}")
    own = _OWN_ID.get(expected_stream)
    if own in data and data[own] != stream_id:
        problems.append(f"{own} {data[own]!r} != stream id {stream_id!r}")
    for name, value in data.items():
        if name.endswith("_minor") or name in _POSITIVE:
            if not _is_int(value):
                problems.append(f"{name} must be an integer, got {value!r}")
            elif value < 0 or value > MAX_MINOR:
                problems.append(f"{name} {value} out of range")
            elif name in _POSITIVE and value == 0:
                problems.append(f"{name} must be positive")
        elif name == "currency" and not is_known_currency(value):
            problems.append(f"unknown currency {value!r}")
    qty: Any = data.get("quantity")
    if (
        event_type in ("StockReserved", "StockReleased", "StockShipped", "StockReturned")
        and _is_int(qty)
        and not MIN_QUANTITY <= qty <= MAX_QUANTITY
    ):
        problems.append(f"quantity {data['quantity']} outside {MIN_QUANTITY}..{MAX_QUANTITY}")
    if event_type == "OrderPlaced" and "lines" in data:
        problems.extend(_order_lines_problems(data))
    problems.extend(_stock_problems(event_type, data))
    return problems


def _stock_problems(event_type: str, data: dict[str, Any]) -> list[str]:
    """Rules of the stock movements and returned lines that the generic field checks do not cover."""
    problems: list[str] = []
    if event_type == "StockShipped" and "from_reserved" in data:
        part: Any = data["from_reserved"]
        if not _is_int(part) or part < 0 or (_is_int(data.get("quantity")) and part > data["quantity"]):
            problems.append(f"from_reserved {part!r} must be an integer in 0..quantity")
    if event_type == "StockReturned" and not isinstance(data.get("restocked", False), bool):
        problems.append("restocked must be true or false")
    if event_type == "StockAdjusted":
        delta: Any = data.get("delta")
        if not _is_int(delta) or delta == 0 or abs(delta) > MAX_RESTOCK:
            problems.append(f"delta {delta!r} must be a non-zero integer of at most {MAX_RESTOCK} either way")
        if "reason" in data and data["reason"] not in ADJUST_REASONS:
            problems.append(f"reason {data['reason']!r} is not one of {', '.join(ADJUST_REASONS)}")
    if event_type == "OrderRefunded" and "lines" in data:
        lines = data["lines"]
        if not isinstance(lines, list):
            return [*problems, "lines must be a list"]
        for no, line in enumerate(lines, start=1):
            q: Any = line.get("quantity") if isinstance(line, dict) else None
            pid: Any = line.get("product_id") if isinstance(line, dict) else None
            if not isinstance(pid, str) or not pid:
                problems.append(f"returned line {no}: product_id missing")
            elif not _is_int(q) or not MIN_QUANTITY <= q <= MAX_QUANTITY:
                problems.append(f"returned line {no}: quantity {q!r} outside {MIN_QUANTITY}..{MAX_QUANTITY}")
        if not isinstance(data.get("restock", False), bool):
            problems.append("restock must be true or false")
    return problems


def _order_lines_problems(data: dict[str, Any]) -> list[str]:
    lines = data["lines"]
    if not isinstance(lines, list) or not lines:
        return ["lines must be a non-empty list"]
    if len(lines) > MAX_LINES:
        return [f"more than {MAX_LINES} lines"]
    problems: list[str] = []
    total = 0
    for no, line in enumerate(lines, start=1):
        if not isinstance(line, dict):
            problems.append(f"line {no} is not an object")
            continue
        qty: Any = line.get("quantity")
        price: Any = line.get("unit_price_minor")
        if not isinstance(line.get("product_id"), str) or not line["product_id"]:
            problems.append(f"line {no}: product_id missing")
        if not _is_int(qty) or not MIN_QUANTITY <= qty <= MAX_QUANTITY:
            problems.append(f"line {no}: quantity {qty!r} outside {MIN_QUANTITY}..{MAX_QUANTITY}")
        elif not _is_int(price) or price < 0:
            problems.append(f"line {no}: unit_price_minor {price!r} invalid")
        else:
            total += qty * price
    if not problems and total != data.get("total_minor"):
        problems.append(f"total_minor {data.get('total_minor')!r} != sum of lines {total}")
    return problems

"""Upcasters: stored event data at an old schema version -> the current one (EVENT_TYPES)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from domain.events import EVENT_TYPES, RecordedEvent
from domain.money import parse_amount

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


def current_version(event_type: str) -> int:
    return EVENT_TYPES[event_type][1] if event_type in EVENT_TYPES else 1


def upcast(event_type: str, schema_version: int, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Apply upcasters step by step until the current version; unknown event types pass through.

    Raises ValueError when a step is missing or the stored version is newer than this code knows.
    """
    target = current_version(event_type)
    if schema_version > target:
        raise ValueError(f"{event_type} v{schema_version} is newer than supported v{target}")
    version = schema_version
    while version < target:
        fn = UPCASTERS.get((event_type, version))
        if fn is None:
            raise ValueError(f"no upcaster for {event_type} v{version}")
        data = fn(data)
        version += 1
    return version, data


def upcast_event(event: RecordedEvent) -> RecordedEvent:
    """A stored event at the current schema version of its type (the same object when it is current).
    Every reader of the event store hands out events through this."""
    version, data = upcast(event.event_type, event.schema_version, event.data)
    if version == event.schema_version:
        return event
    return dataclasses.replace(event, schema_version=version, data=data)


def _order_placed_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 lines carried ``unit_price`` as a major-unit decimal string and there was no total."""
    currency = data["currency"]
    lines = []
    for line in data["lines"]:
        if "unit_price_minor" in line:
            price = int(line["unit_price_minor"])
        else:
            price = parse_amount(line["unit_price"], currency)
        lines.append({"product_id": line["product_id"], "quantity": int(line["quantity"]),
                      "unit_price_minor": price})
    out = {k: v for k, v in data.items() if k != "lines"}
    out["lines"] = lines
    out.setdefault("channel", None)
    out["total_minor"] = sum(x["quantity"] * x["unit_price_minor"] for x in lines)
    return out


def _order_refunded_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 refunds were money only: nothing came back."""
    return {**data, "lines": [], "restock": False}


# (event type, stored version) -> the step to the next version
UPCASTERS: Mapping[tuple[str, int], Upcaster] = MappingProxyType({
    ("OrderPlaced", 1): _order_placed_v1_to_v2,
    ("OrderRefunded", 1): _order_refunded_v1_to_v2,
})

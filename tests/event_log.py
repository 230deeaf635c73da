"""Builds RecordedEvents for tests: increasing positions, per-stream versions, one tenant."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from commands.ports import StreamWrite
from domain.events import EVENT_TYPES, NewEvent, RecordedEvent

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


class EventLog:
    def __init__(self, tenant: str, events_per_command: int = 1, start: datetime = T0) -> None:
        self.tenant = tenant
        self.events_per_command = events_per_command
        self.start = start
        self.position = 0
        self.versions: dict[tuple[str, str], int] = {}
        self.events: list[RecordedEvent] = []

    def add(self, event_type: str, stream_id: str, at: datetime | None = None, **data: Any) -> RecordedEvent:
        """``at`` defaults to ``start`` plus one second per position."""
        stream_type, schema_version, _ = EVENT_TYPES[event_type]
        self.position += 1
        v = self.versions.get((stream_type, stream_id), 0) + 1
        self.versions[(stream_type, stream_id)] = v
        when = at or self.start + timedelta(seconds=self.position)
        e = RecordedEvent(
            position=self.position,
            tenant_id=self.tenant,
            stream_type=stream_type,
            stream_id=stream_id,
            stream_version=v,
            event_id=str(uuid.uuid4()),
            event_type=event_type,
            schema_version=schema_version,  # as stored events read back: upcast to the current version
            data=data,
            occurred_at=when,
            recorded_at=when,
            transaction_id=self.position,
            metadata={"command_id": f"cmd-{self.position // self.events_per_command}", "correlation_id": "c"},
        )
        self.events.append(e)
        return e

    def refund(
        self, order_id: str, payment_id: str, at: datetime, amount_minor: int, currency: str, full: bool
    ) -> None:
        """The first refund of an order paid by one payment: OrderRefunded + PaymentRefunded."""
        self.add("OrderRefunded", order_id, at, order_id=order_id, amount_minor=amount_minor,
                 currency=currency, refunded_total_minor=amount_minor, full=full, lines=[], restock=False)
        self.add("PaymentRefunded", payment_id, at, payment_id=payment_id, order_id=order_id,
                 amount_minor=amount_minor, currency=currency)


def order_write(stream_id: str, expected: int, count: int = 1) -> StreamWrite:
    """``count`` OrderConfirmed events for one order stream, appended after ``expected``."""
    events = [NewEvent("order", stream_id, "OrderConfirmed", {"order_id": stream_id}) for _ in range(count)]
    return StreamWrite("order", stream_id, expected, events)

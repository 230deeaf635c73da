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


def shop_log(tenant: str, seed: int, steps: int = 40) -> EventLog:
    """A random shop history of one tenant: users, products, stock, orders of several lines that are
    confirmed, paid, shipped, cancelled or refunded, and browsing sessions (valid events only)."""
    import random

    rng = random.Random(seed)
    log = EventLog(tenant)
    users = [f"USR-{n:05d}" for n in range(1, 4)]
    products = [f"PROD-{n:03d}" for n in range(1, 5)]
    for uid in users:
        log.add("UserRegistered", uid, user_id=uid, name=uid, email=f"{uid}@x.test", region="eu")
    for pid in products:
        log.add("ProductRegistered", pid, product_id=pid, name=pid, category=rng.choice(["a", "b", "c"]),
                price_minor=100 * rng.randint(1, 9), currency="USD")
    orders: list[str] = []
    for step in range(steps):
        roll = rng.random()
        if roll < 0.3 or not orders:
            oid, uid = f"ORD-20240501-{step:04d}", rng.choice(users)
            lines = [{"product_id": pid, "quantity": rng.randint(1, 3), "unit_price_minor": 250}
                     for pid in rng.sample(products, rng.randint(1, 2))]
            log.add("OrderPlaced", oid, order_id=oid, user_id=uid, currency="USD", channel="web", lines=lines,
                    total_minor=sum(ln["quantity"] * 250 for ln in lines))
            orders.append(oid)
        elif roll < 0.45:
            oid = rng.choice(orders)
            pay = f"PAY-{step:04d}"
            log.add("PaymentInitiated", pay, payment_id=pay, order_id=oid, amount_minor=250, currency="USD",
                    method="card")
            log.add("PaymentCompleted", pay, payment_id=pay, order_id=oid, amount_minor=250, currency="USD")
            log.add("OrderPaymentCaptured", oid, order_id=oid, payment_id=pay, amount_minor=250,
                    currency="USD")
        elif roll < 0.55:
            oid = rng.choice(orders)
            log.add(rng.choice(["OrderConfirmed", "OrderShipped", "OrderDelivered"]), oid, order_id=oid)
        elif roll < 0.62:
            oid = rng.choice(orders)
            log.add("OrderCancelled", oid, order_id=oid, reason="changed mind")
        elif roll < 0.7:
            oid = rng.choice(orders)
            log.add("OrderRefunded", oid, order_id=oid, amount_minor=100, currency="USD",
                    refunded_total_minor=100, full=False, lines=[], restock=False)
        elif roll < 0.85:
            pid = rng.choice(products)
            log.add("StockReceived", pid, product_id=pid, quantity=rng.randint(1, 5))
        else:
            sid = f"SES-{rng.randint(1, 3):x}"
            log.add(rng.choice(["PageViewed", "ItemAddedToCart", "CheckoutStarted"]), sid, session_id=sid,
                    user_id=rng.choice([None, *users]), page_url="/p", product_id=rng.choice(products))
    return log

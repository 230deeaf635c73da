"""The SDK's protocol pieces without a server: Retry-After parsing and the retry verdicts, which calls
may be sent again, Idempotency-Key defaults, and the SSE framing (the live behaviour is in
tests/e2e/test_sdk.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from agentflow_client import RetryPolicy, calls
from agentflow_client.retry import parse_retry_after
from agentflow_client.sse import SseParser


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    later = parse_retry_after(format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True))
    assert later is not None and 25 <= later <= 30


def test_retry_verdicts() -> None:
    policy = RetryPolicy(max_retries=2, backoff=0.5, max_backoff=1.0, max_retry_after=10)
    assert policy.delay(1, 4.0) == 4.0  # the server's word, as is
    assert policy.delay(1, 11.0) is None  # longer than we wait: raised with retry_after
    assert 0.25 <= (policy.delay(1, None) or 0) <= 0.5 and 0.5 <= (policy.delay(2, None) or 0) <= 1.0
    assert policy.delay(3, 1.0) is None


def test_commands_carry_a_key_unless_told_not_to_and_only_keyed_ones_are_retryable() -> None:
    generated = calls.confirm_order("ORD-1")
    assert generated.command and generated.idempotency_key and generated.retryable
    assert calls.confirm_order("ORD-1").idempotency_key != generated.idempotency_key
    assert calls.confirm_order("ORD-1", idempotency_key="mine", if_match=3).idempotency_key == "mine"
    keyless = calls.confirm_order("ORD-1", idempotency_key=False)
    assert keyless.idempotency_key is None and not keyless.retryable
    read = calls.metric("revenue", "1h", currency="EUR")
    assert read.retryable and read.consistent and read.params == {"window": "1h", "currency": "EUR"}
    assert calls.entity("order", "a/b").path == "/v1/entity/order/a%2Fb"


def test_sse_frames_comments_and_retry() -> None:
    parser = SseParser(last_event_id=7)
    lines = ["retry: 1500", ": stream open at position 7", "", "id: 8", "event: OrderPlaced",
             'data: {"entity_id": "ORD-1",', 'data: "n": 1}', "", ": heartbeat 8", ""]  # fmt: skip
    events = [e for e in map(parser.feed, lines) if e is not None]
    assert [(e.id, e.event, e.data) for e in events] == [(8, "OrderPlaced", {"entity_id": "ORD-1", "n": 1})]
    assert parser.last_event_id == 8 and parser.retry_s == 1.5

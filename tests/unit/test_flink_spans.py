"""The Flink operator's spans (projections/flink/spans.py) around the real pipeline, recorded in memory:
a traced event's ``flink.project`` span is a CONSUMER child of the span its traceparent names; untraced
events get none; with no endpoint nothing is set up."""

from __future__ import annotations

import json
import secrets
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from test_flink_pipeline import Dedup, DictState, busy_shop, cdc_value

from domain.events import RecordedEvent
from projections.flink.pipeline import Outcome, StateLookup, process
from projections.flink.spans import DEFAULT_SERVICE, OperatorSpans, operator_spans


class Operator:
    """What ProjectEvents does per element, with dict state and an in-memory exporter."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.exporter = InMemorySpanExporter()
        spans = operator_spans(env or {}, SimpleSpanProcessor(self.exporter))
        assert spans is not None
        self.spans: OperatorSpans = spans
        self.state, self.dedup = DictState(), Dedup()
        self.lookup = StateLookup(self.state)

    def _process(self, value: str) -> Outcome:
        return process(value, self.dedup.seen, self.dedup.mark, self.lookup)

    def element(self, value: str) -> Outcome:
        return self.spans.project(value, self._process)

    def finished(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())


def traced(e: RecordedEvent, trace_id: str, span_id: str, **override: Any) -> str:
    metadata = {**e.metadata, "traceparent": f"00-{trace_id}-{span_id}-01", "tracestate": "af=1"}
    return cdc_value(e, metadata=json.dumps(metadata), **override)


def test_no_endpoint_no_spans() -> None:
    assert operator_spans({}) is None
    assert operator_spans({"OTEL_SERVICE_NAME": "x"}) is None


def test_traced_event_is_a_consumer_child_of_its_append_span() -> None:
    events = busy_shop().store.events
    op = Operator()
    trace_id, append = secrets.token_hex(16), secrets.token_hex(8)
    event = next(e for e in events if e.event_type == "OrderPlaced")
    # the rows the order's projection looks up (products, users) come first, untraced
    for e in events[: events.index(event)]:
        assert op.element(cdc_value(e)).serving is not None
    assert op.finished() == []

    before = StateLookup(DictState(op.state))  # the pipeline alone, on the same state
    expected = process(traced(event, trace_id, append), lambda _: False, lambda _: None, before)
    out = op.element(traced(event, trace_id, append))
    assert out.serving is not None and out.lake == expected.lake and len(out.lake) >= 2
    [span] = op.finished()
    assert span.name == "flink.project" and span.kind == SpanKind.CONSUMER
    assert span.context.trace_id == int(trace_id, 16)
    assert span.parent is not None and span.parent.span_id == int(append, 16) and span.parent.is_remote
    assert span.context.trace_state.to_header() == "af=1"
    assert dict(span.attributes or {}) == {
        "agentflow.position": event.position,
        "agentflow.event_type": "OrderPlaced",
        "agentflow.tenant": event.tenant_id,
        "agentflow.serving": 1,
        "agentflow.dead_letter": 0,
        "agentflow.lake_rows": len(expected.lake),
        "agentflow.duplicate": False,
    }
    assert span.resource.attributes["service.name"] == DEFAULT_SERVICE


def test_duplicates_and_dead_letters_are_told_apart() -> None:
    e = busy_shop().store.events[0]
    op = Operator({"OTEL_SERVICE_NAME": "flink-x"})
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    op.element(traced(e, trace_id, span_id))
    assert op.element(traced(e, trace_id, span_id)) == Outcome()
    bad = traced(e, trace_id, span_id, event_id="bad-1", data=json.dumps({"product_id": "PROD-001"}))
    assert op.element(bad).dead_letter is not None
    first, duplicate, dead = op.finished()
    assert first.attributes is not None and first.attributes["agentflow.serving"] == 1
    assert duplicate.attributes is not None and duplicate.attributes["agentflow.duplicate"] is True
    assert duplicate.attributes["agentflow.serving"] == 0
    assert dead.attributes is not None and dead.attributes["agentflow.dead_letter"] == 1
    assert dead.resource.attributes["service.name"] == "flink-x"


def test_untraced_or_unreadable_records_pass_without_a_span() -> None:
    e = busy_shop().store.events[0]
    op = Operator()
    bad_parent = cdc_value(e, metadata=json.dumps({"traceparent": "00-zz-yy-01"}))
    for value in (cdc_value(e, event_id="a"), bad_parent, '{"traceparent": not json', "null"):
        op.element(value)
    assert op.finished() == []


def test_at_most_max_per_s_spans_a_second() -> None:
    """A replay of traced history makes a bounded number of spans: 2 a second here."""
    events = busy_shop().store.events[:7]
    now = [100.0]
    exporter = InMemorySpanExporter()
    recording = operator_spans({}, SimpleSpanProcessor(exporter))
    assert recording is not None
    spans = OperatorSpans(recording.provider, max_per_s=2, clock=lambda: now[0])
    dedup, lookup = Dedup(), StateLookup(DictState())
    trace_id = secrets.token_hex(16)
    for i, e in enumerate(events):
        now[0] = 100.0 + (0.3 * i if i < 5 else 2.0 + 0.1 * i)  # 5 events in [100, 101.2), 2 at 102.5+
        value = traced(e, trace_id, f"{i + 1:016x}")
        spans.project(value, lambda v: process(v, dedup.seen, dedup.mark, lookup))
    parents = [s.parent.span_id for s in exporter.get_finished_spans() if s.parent is not None]
    # window from 100.0: events 0, 1 (2, 3 over budget); window from 101.2: event 4; from 102.5: 5, 6
    assert parents == [1, 2, 5, 6, 7]

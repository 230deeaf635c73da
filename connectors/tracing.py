"""Trace context that travels with an event, and the spans of the parts that write read models.

OpenTelemetry's API is a no-op until services/tracing_setup.py installs the SDK (only when
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, or a test installs an in-memory exporter), so every helper here
first checks ``active()``: with tracing off, an append or a projection batch pays one attribute read.

The chain: the command's span is current when the event store appends, so ``with_trace_context`` writes
its W3C ``traceparent`` (and ``tracestate``) into each event's metadata. A projection batch covers many
commands' events, so ``TracedSink`` gives the batch its own span *linked* to those commands' spans, and
for each traced event one ``<sink>.apply`` span that is a *child* of its command's span (covering the
batch's write): the command's trace shows HTTP → command → append → read-model write.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from domain.events import RecordedEvent

TRACER = trace.get_tracer("agentflow")
TRACEPARENT, TRACESTATE = "traceparent", "tracestate"
# per batch: links from the batch span, and child spans in the commands' traces (a rebuild replays
# millions of events: their traces are long closed and the batch span says how many there were)
MAX_LINKS = 64
MAX_EVENT_SPANS = 256

_propagator = TraceContextTextMapPropagator()
_active = False


def activate(on: bool = True) -> None:
    """Called by services/tracing_setup.py once an SDK tracer provider is installed."""
    global _active
    _active = on


def active() -> bool:
    return _active


Attributes = Mapping[str, str | int | float | bool]


def span(
    name: str, attributes: Attributes | None = None, parent: Context | None = None
) -> AbstractContextManager[Any]:
    """A span around a block when tracing is on (a child of ``parent`` when given, e.g. an event's
    ``event_context``); nothing otherwise."""
    if not _active:
        return nullcontext()
    return TRACER.start_as_current_span(name, context=parent, attributes=attributes)


def with_trace_context(metadata: dict[str, Any]) -> dict[str, Any]:
    """``metadata`` plus the current span's ``traceparent`` (a copy; the same dict when there is none)."""
    if not _active or not trace.get_current_span().get_span_context().is_valid:
        return metadata
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return {**metadata, **carrier}


def event_context(metadata: Mapping[str, Any] | None) -> Context | None:
    """The trace context an event was appended in (None when it carries none)."""
    if not metadata or TRACEPARENT not in metadata:
        return None
    carrier = {k: str(metadata[k]) for k in (TRACEPARENT, TRACESTATE) if k in metadata}
    ctx = _propagator.extract(carrier)
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


def _traced(events: Iterable[RecordedEvent], limit: int) -> list[tuple[RecordedEvent, Context]]:
    found: list[tuple[RecordedEvent, Context]] = []
    for e in events:
        ctx = event_context(e.metadata)
        if ctx is not None:
            found.append((e, ctx))
            if len(found) >= limit:
                break
    return found


def traced_write(name: str, events: Sequence[RecordedEvent], write: Callable[[], None]) -> None:
    """``write()`` (the read-model write of ``events``) inside a ``<name>.batch`` span linked to the
    events' commands, and for each traced event an ``<name>.apply`` span in its command's trace."""
    if not _active or not events:
        write()
        return
    traced = _traced(events, MAX_EVENT_SPANS)
    links = [Link(trace.get_current_span(ctx).get_span_context()) for _, ctx in traced[:MAX_LINKS]]
    attributes: dict[str, str | int] = {
        "agentflow.sink": name,
        "agentflow.events": len(events),
        "agentflow.position.first": events[0].position,
        "agentflow.position.last": events[-1].position,
    }
    started = time.time_ns()
    with TRACER.start_as_current_span(f"{name}.batch", links=links, attributes=attributes) as batch:
        write()
    ended = time.time_ns()
    batch_link = [Link(batch.get_span_context())]
    for event, ctx in traced:
        span = TRACER.start_span(
            f"{name}.apply", context=ctx, kind=SpanKind.CONSUMER, start_time=started, links=batch_link,
            attributes={"agentflow.sink": name, "agentflow.position": event.position,
                        "agentflow.event_type": event.event_type, "agentflow.tenant": event.tenant_id},
        )  # fmt: skip
        span.end(end_time=ended)


class TracedSink:
    """A projection sink (projections/ports.py ``Sink``) whose batches are spans: ``apply`` runs inside a
    ``<name>.batch`` span, and each traced event of the batch gets an ``<name>.apply`` span in its
    command's trace. Everything else is the wrapped sink's own."""

    def __init__(self, sink: Any, name: str) -> None:
        self._sink = sink
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._sink, attr)

    def apply(self, events: Sequence[RecordedEvent], cursor: Any, watermark: int) -> None:
        traced_write(self._name, events, lambda: self._sink.apply(events, cursor, watermark))


def traced(sink: Any, name: str) -> Any:
    """``sink`` as a TracedSink when tracing is on (decided once, when the runtime starts), else itself."""
    return TracedSink(sink, name) if _active else sink

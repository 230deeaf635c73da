"""The Flink operator's spans (docs/tracing.md): one ``flink.project`` span per traced event.

Off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set in the job's environment. Then each Python worker
installs its own tracer provider (OTLP/HTTP, batched; service name ``OTEL_SERVICE_NAME`` or
``agentflow-flink``; the other standard ``OTEL_*`` variables apply as the SDK reads them), and an event
whose metadata carries a W3C ``traceparent`` (written by the append, connectors/tracing.py) is processed
inside a CONSUMER span whose parent is that append span. Events without one get no span: a replay of
untraced history must not flood the exporter with root traces.

Only job.py imports this module, and it imports OpenTelemetry lazily: with tracing off the job holds no
SDK object and pays one ``is None`` check per event. The pure pipeline (pipeline.py) knows nothing of it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from projections.flink.pipeline import InvalidRecord, Outcome, load_record

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

SPAN = "flink.project"
DEFAULT_SERVICE = "agentflow-flink"
FLUSH_TIMEOUT_MS = 2000
MAX_SPANS_PER_S = 512
EXPORT_EVERY_MS = 1000  # unless OTEL_BSP_SCHEDULE_DELAY says otherwise (the SDK's default is 5000)

_provider: TracerProvider | None = None  # one per Python worker process, shared by its operators


def _provider_for(env: Mapping[str, str], processor: SpanProcessor | None) -> TracerProvider:
    """A provider exporting to ``processor``, or (None) the worker's OTLP one, created once."""
    global _provider
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    if processor is None and _provider is not None:
        return _provider
    name = env.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    if processor is not None:
        provider.add_span_processor(processor)
        return provider
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # both read the OTEL_* variables; a killed worker loses at most the last second of spans by default
    delay = None if env.get("OTEL_BSP_SCHEDULE_DELAY") else EXPORT_EVERY_MS
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(), schedule_delay_millis=delay))
    _provider = provider
    return provider


def operator_spans(
    env: Mapping[str, str] = os.environ, processor: SpanProcessor | None = None
) -> OperatorSpans | None:
    """The operator's spans when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (or a test gives a
    ``processor``); None otherwise, and then nothing of OpenTelemetry is imported."""
    if processor is None and not env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return None
    return OperatorSpans(_provider_for(env, processor))


class OperatorSpans:
    """``flink.project`` spans for up to ``max_per_s`` traced events a second: a replay of traced
    history (a fresh job reads the topic from the start) makes a few spans in those long-closed traces,
    not millions (the loader caps its per-event spans per batch the same way)."""

    def __init__(
        self, provider: TracerProvider, max_per_s: int = MAX_SPANS_PER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider = provider
        self.tracer = provider.get_tracer("agentflow.flink")
        self.max_per_s = max_per_s
        self._clock = clock
        self._window, self._spent = clock(), 0
        self._propagator = TraceContextTextMapPropagator()
        self._span_of = trace.get_current_span
        self._consumer = trace.SpanKind.CONSUMER

    def _budget(self) -> bool:
        now = self._clock()
        if now - self._window >= 1.0:
            self._window, self._spent = now, 0
        self._spent += 1
        return self._spent <= self.max_per_s

    def _parent(self, value: str) -> tuple[Any, dict[str, str | int]] | None:
        """The trace context the event was appended in and its span attributes; None when untraced
        (or over budget)."""
        if "traceparent" not in value or not self._budget():  # most cheaply ruled out first
            return None
        try:
            record = load_record(value)
            metadata = record.get("metadata")
            if isinstance(metadata, str):
                metadata = json.loads(metadata)
        except (InvalidRecord, ValueError):
            return None  # the pipeline dead-letters it; there is no trace to join
        if not isinstance(metadata, dict) or "traceparent" not in metadata:
            return None
        carrier = {k: str(metadata[k]) for k in ("traceparent", "tracestate") if k in metadata}
        ctx = self._propagator.extract(carrier)
        if not self._span_of(ctx).get_span_context().is_valid:
            return None
        position = record.get("position")
        return ctx, {
            "agentflow.position": position if isinstance(position, int) else str(position),
            "agentflow.event_type": str(record.get("event_type")),
            "agentflow.tenant": str(record.get("tenant_id")),
        }

    def project(self, value: str, run: Callable[[str], Outcome]) -> Outcome:
        """``run(value)`` (the pipeline's processing of the record) inside a ``flink.project`` span in the
        event's command trace, when the event carries one."""
        parent = self._parent(value)
        if parent is None:
            return run(value)
        ctx, attributes = parent
        with self.tracer.start_as_current_span(
            SPAN, context=ctx, kind=self._consumer, attributes=attributes
        ) as span:
            out = run(value)
            span.set_attributes({
                "agentflow.serving": int(out.serving is not None),
                "agentflow.dead_letter": int(out.dead_letter is not None),
                "agentflow.lake_rows": len(out.lake),
                "agentflow.duplicate": out.serving is None and out.dead_letter is None,
            })  # fmt: skip
        return out

    def flush(self) -> None:
        """Export what is queued now (the operator's close(): a cancelled task's worker may be killed
        before exit handlers run). While the job runs, the batch processor's own thread exports every
        ``OTEL_BSP_SCHEDULE_DELAY`` ms (here 1000 by default) -- it runs in PEMJA's thread mode too --
        so the task thread never waits on the collector."""
        self.provider.force_flush(FLUSH_TIMEOUT_MS)

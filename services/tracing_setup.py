"""OpenTelemetry for this process (docs/observability.md, "Traces").

Off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (the standard variable: spans go to
``<endpoint>/v1/traces`` over OTLP/HTTP, batched); ``OTEL_SERVICE_NAME`` names the process (default
``agentflow``), and the other standard ``OTEL_*`` variables apply. With tracing off nothing is installed
and the instrumented paths skip their spans (connectors/tracing.py ``active()``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from connectors import tracing

log = logging.getLogger("agentflow.tracing")


def install_tracing(
    env: Mapping[str, str] = os.environ, processor: SpanProcessor | None = None
) -> TracerProvider | None:
    """Install the SDK tracer provider when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (or a ``processor`` is
    given, e.g. a test's in-memory exporter); returns it, or None when tracing stays off."""
    if processor is None:
        endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        if not endpoint:
            return None
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter: SpanExporter = OTLPSpanExporter()  # reads the OTEL_EXPORTER_OTLP_* variables itself
        processor = BatchSpanProcessor(exporter)
        log.info("tracing: OTLP/HTTP spans to %s", endpoint)
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):  # a process has one provider: add to the one installed
        provider = current
    else:
        name = env.get("OTEL_SERVICE_NAME", "agentflow")
        provider = TracerProvider(resource=Resource.create({"service.name": name}))  # flushed at exit
        trace.set_tracer_provider(provider)
    provider.add_span_processor(processor)
    tracing.activate()
    return provider


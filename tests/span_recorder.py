"""The spans of this test process, kept in memory while a test records them.

A process has one OpenTelemetry tracer provider: the first ``recording_spans()`` installs it
(services/tracing_setup.py, with a synchronous in-memory exporter); each use switches tracing on for its
block only, so the rest of the process runs untraced as in production without an endpoint.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from connectors import tracing
from services.tracing_setup import install_tracing

_EXPORTER = InMemorySpanExporter()
_installed = False


@contextmanager
def recording_spans() -> Iterator[InMemorySpanExporter]:
    global _installed
    if not _installed:
        install_tracing(processor=SimpleSpanProcessor(_EXPORTER))  # spans are exported as they end
        _installed = True
    tracing.activate()
    _EXPORTER.clear()
    try:
        yield _EXPORTER
    finally:
        tracing.activate(False)

"""With tracing off (no OTEL_EXPORTER_OTLP_ENDPOINT), nothing is installed and nothing is added."""

from __future__ import annotations

from connectors import tracing
from services.tracing_setup import install_tracing


def test_no_endpoint_installs_nothing() -> None:
    was = tracing.active()
    assert install_tracing(env={}) is None
    assert tracing.active() == was


def test_off_adds_no_trace_context() -> None:
    assert not tracing.active()  # tests switch it on for their own block only (tests/span_recorder.py)
    metadata = {"correlation_id": "c"}
    assert tracing.with_trace_context(metadata) is metadata
    assert tracing.event_context(metadata) is None
    sink = object()
    assert tracing.traced(sink, "clickhouse") is sink

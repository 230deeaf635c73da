"""One command's trace, in process with an in-memory span exporter: the caller's W3C traceparent is the
parent of the HTTP span, and the trace goes on through the command, the event-store append (whose
traceparent the stored event carries) and the read-model write of that event, which the projection
batch's own span links to."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from span_recorder import recording_spans
from sqlalchemy import text

from connectors.database import make_engine
from services.api.app import create_app
from services.bootstrap import build

from .conftest import KEYS, A, in_process_settings


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemorySpanExporter]:
    with recording_spans() as spans:
        yield spans


@pytest.fixture(scope="module")
def traced_client(
    exporter: InMemorySpanExporter, database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient[Any]]:
    """An app built while tracing is on (its HTTP wrapper and traced sinks are chosen then)."""
    container = build(in_process_settings(tmp_path_factory.mktemp("traced")), database, KEYS)
    container.clickhouse.drop_all()
    container.clickhouse.ensure_schema()
    try:
        with TestClient(create_app(container), timeout=60) as c:
            yield c
    finally:
        container.close()


def _hex(n: int, width: int) -> str:
    return format(n, f"0{width}x")


def test_a_commands_trace_reaches_the_read_model_write(
    traced_client: TestClient[Any], exporter: InMemorySpanExporter, database: str
) -> None:
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    headers = {**A, "traceparent": f"00-{trace_id}-{caller_span}-01"}
    exporter.clear()
    r = traced_client.post("/v1/products", json={"name": "Traced", "category": "t", "price": "3.50",
                                                  "currency": "USD"}, headers=headers)  # fmt: skip
    assert r.status_code == 201, r.text
    pid, position = r.json()["product_id"], r.json()["position"]
    # the read waits until the serving projection applied the event: its spans have ended by then
    read = traced_client.get(f"/v1/entity/product/{pid}", params={"min_position": position}, headers=A)
    assert read.status_code == 200, read.text

    spans = exporter.get_finished_spans()
    mine = [s for s in spans if _hex(s.context.trace_id, 32) == trace_id]
    by_name: dict[str, ReadableSpan] = {}
    for s in mine:
        by_name.setdefault(s.name, s)
    http = by_name["POST /v1/products"]
    command = next(s for s in mine if s.name.startswith("command "))
    append = by_name["event_store.append"]
    apply = by_name["clickhouse.apply"]

    def parent_of(s: ReadableSpan) -> str | None:
        return _hex(s.parent.span_id, 16) if s.parent is not None else None

    assert parent_of(http) == caller_span
    assert parent_of(command) == _hex(http.context.span_id, 16)
    assert parent_of(append) == _hex(command.context.span_id, 16)
    assert parent_of(apply) == _hex(append.context.span_id, 16)
    assert apply.attributes is not None and apply.attributes["agentflow.position"] == position
    assert http.attributes is not None and http.attributes["http.response.status_code"] == 201

    # the stored event carries the append span's context
    engine = make_engine(database, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:
            found = conn.execute(text("SELECT metadata FROM events WHERE position = :p"), {"p": position})
            metadata = found.scalar_one()
    finally:
        engine.dispose()
    assert metadata["traceparent"] == f"00-{trace_id}-{_hex(append.context.span_id, 16)}-01"

    # the batch that applied it has a trace of its own, linked to the append
    batch = next(s for s in spans if s.name == "clickhouse.batch" and any(
        link.context.span_id == append.context.span_id for link in s.links))  # fmt: skip
    assert _hex(batch.context.trace_id, 32) != trace_id
    assert apply.links and apply.links[0].context.span_id == batch.context.span_id


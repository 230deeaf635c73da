"""The HTTP span of each request (only installed when tracing is on: services/tracing_setup.py).

A bare ASGI wrapper inside the front door: the span is opened before routing and named after it by the
matched route's template (``GET /v1/entity/{entity_type}/{entity_id}``), never the raw path; the
W3C ``traceparent`` of the caller, if any, is its parent.
"""

from __future__ import annotations

from litestar.types import ASGIApp, Message, Receive, Scope, Send
from opentelemetry.propagate import extract
from opentelemetry.trace import SpanKind, Status, StatusCode

from connectors.tracing import TRACER


class TracedHttp:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]  # type: ignore[typeddict-item]
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]
                   if k in (b"traceparent", b"tracestate")}  # fmt: skip
        status = 500

        async def send_traced(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with TRACER.start_as_current_span(
            f"{method} {scope['path']}", context=extract(carrier) if carrier else None, kind=SpanKind.SERVER,
            attributes={"http.request.method": method},
        ) as span:  # fmt: skip
            # the access line is written after this span ends (services/logs.py reads it from the state)
            state = scope.setdefault("state", {})  # type: ignore[typeddict-item]
            state["trace_id"] = format(span.get_span_context().trace_id, "032x")
            try:
                await self.app(scope, receive, send_traced)
            finally:
                template = scope.get("path_template")
                span.update_name(f"{method} {template}" if template else method)
                if template:
                    span.set_attribute("http.route", str(template))
                span.set_attribute("http.response.status_code", status)
                if "tenant" in state:
                    span.set_attribute("agentflow.tenant", str(state["tenant"]))
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))


"""Process log output (docs/operations.md, "Logs"), configured once by the entry point (services/cli.py).

structlog renders every line, the stdlib `logging.getLogger(__name__)` ones too (through structlog's
``ProcessorFormatter`` on the root handler): one JSON object a line when stderr is not a terminal, a
readable console line when it is. Each line carries ``time`` (UTC, ISO 8601), ``level``, ``logger`` and
``event``, and where they apply:

- ``tenant``, ``correlation_id``, ``request_id``, ``trace_id``: of the HTTP request being served. The front
  door (services/api/http_guard.py) points ``REQUEST_SCOPE`` at the request's ASGI scope, whose state holds
  the request id and, once authenticated, the tenant (services/api/dependencies.py); the fields are read
  from it only when a line is written, so a request that logs nothing pays one ContextVar.set.
  ``trace_id`` is the current OpenTelemetry span's when one is recording, else the request's W3C
  ``traceparent`` header's;
- anything bound with ``structlog.contextvars.bind_contextvars`` (e.g. ``position``) or passed as a
  stdlib ``extra={...}``.

The access line (logger ``agentflow.access``, one per sampled request) is written by the front door.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from typing import Any, TextIO

import structlog
from litestar.types import Scope
from structlog.types import EventDict, Processor, WrappedLogger

try:
    from opentelemetry import trace as _otel_trace
except ImportError:  # pragma: no cover - opentelemetry-api comes with mcp; without it there are no spans
    _otel_trace = None  # type: ignore[assignment]

# the ASGI scope of the HTTP request this task serves, set by the front door
REQUEST_SCOPE: ContextVar[Scope | None] = ContextVar("agentflow_request_scope", default=None)
QUIET_LOGGERS = ("uvicorn.error", "alembic", "httpx")
ACCESS = logging.getLogger("agentflow.access")
_installed: list[logging.Handler] = []


def add_request_fields(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    scope = REQUEST_SCOPE.get()
    if scope is not None:
        for name, value in request_fields(scope).items():
            event.setdefault(name, value)
    return event


def request_fields(scope: Scope) -> dict[str, str]:
    """tenant (once authenticated), correlation_id (X-Correlation-ID, else the request id: what error bodies
    carry, services/api/dependencies.py), request_id and trace_id (of a ``traceparent``) of a request."""
    state: dict[str, Any] = scope.get("state") or {}  # type: ignore[assignment]
    fields: dict[str, str] = {}
    correlation = state.get("correlation_id")
    traceparent = None
    for name, value in scope.get("headers", ()):
        if name == b"x-correlation-id" and correlation is None:
            correlation = value.decode("latin-1")
        elif name == b"traceparent":
            traceparent = value.decode("latin-1")
    if (tenant := state.get("tenant")) is not None:
        fields["tenant"] = tenant
    request_id = state.get("request_id")
    if correlation or request_id:
        fields["correlation_id"] = str(correlation or request_id)
    if request_id is not None:
        fields["request_id"] = request_id
    # the request's own span (services/api/tracing.py), else the caller's traceparent
    trace_id = state.get("trace_id") or (trace_id_of(traceparent) if traceparent is not None else None)
    if trace_id is not None:
        fields["trace_id"] = trace_id
    return fields


def log_access(scope: Scope, status: int, seconds: float) -> None:
    """The access line of one answered request (the front door decides which are written)."""
    level = logging.WARNING if status >= 500 else logging.INFO
    if ACCESS.isEnabledFor(level):
        method, path = scope.get("method", ""), scope["path"]
        ACCESS.log(
            level, "%s %s %d", method, path, status,
            extra={"method": method, "path": path, "status": status, "duration_ms": round(seconds * 1e3, 3)},
        )  # fmt: skip


def add_span_trace_id(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    if _otel_trace is not None and "trace_id" not in event:
        context = _otel_trace.get_current_span().get_span_context()
        if context.is_valid:
            event["trace_id"] = format(context.trace_id, "032x")
    return event


def trace_id_of(traceparent: str) -> str | None:
    """The trace id of a W3C ``traceparent`` (``00-<32 hex>-<16 hex>-<2 hex>``), None when malformed."""
    parts = traceparent.split("-")
    if len(parts) >= 4 and len(parts[1]) == 32 and parts[1] != "0" * 32:
        try:
            int(parts[1], 16)
        except ValueError:
            return None
        return parts[1].lower()
    return None


def _leading_fields(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    """time, level, logger and event first: what a reader scans for."""
    ordered = {key: event.pop(key) for key in ("time", "level", "logger", "event") if key in event}
    ordered.update(event)
    return ordered


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        add_span_trace_id,
        add_request_fields,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
    ]


def configure_logging(level: str = "INFO", stream: TextIO | None = None, json: bool | None = None) -> None:
    """Route all logging to ``stream`` (stderr) through structlog: JSON unless ``stream`` is a terminal
    (``json`` forces either). Calling it again replaces the handler it installed before."""
    stream = sys.stderr if stream is None else stream
    if json is None:
        json = not stream.isatty()
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty(), timestamp_key="time")
    )
    final: list[Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta, _leading_fields]
    if json:
        final += [structlog.processors.format_exc_info]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(), processors=[*final, renderer]
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in _installed:
        root.removeHandler(old)
    _installed[:] = [handler]
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )

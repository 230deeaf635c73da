"""services/logs.py: what a log line carries, JSON off a terminal and console on one, and which answers the
front door writes an access line for."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import random
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import structlog

from readmodels.slo import SloTracker
from services.api import http_guard
from services.api.http_guard import HttpGuard
from services.config import ConfigError, HttpSettings, settings_from_env
from services.logs import REQUEST_SCOPE, configure_logging

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def _scope(headers: list[tuple[bytes, bytes]], state: dict[str, Any]) -> dict[str, Any]:
    return {"type": "http", "method": "GET", "path": "/v1/catalog", "headers": headers, "state": state}


def test_stdlib_and_structlog_lines_are_json_with_the_request_fields() -> None:
    out = io.StringIO()  # not a terminal
    configure_logging("INFO", stream=out)
    traceparent = f"00-{TRACE}-00f067aa0ba902b7-01".encode()
    scope = _scope([(b"x-correlation-id", b"corr-7"), (b"traceparent", traceparent)],
                   {"request_id": "rid-1", "tenant": "tenant-a"})  # fmt: skip
    token = REQUEST_SCOPE.set(scope)  # type: ignore[arg-type]
    try:
        logging.getLogger("agentflow.test").warning("applied %d events", 3, extra={"position": 42})
        structlog.contextvars.bind_contextvars(position=43)
        structlog.get_logger("agentflow.other").info("bound")
        logging.getLogger("agentflow.test").debug("below the level")
    finally:
        structlog.contextvars.clear_contextvars()
        REQUEST_SCOPE.reset(token)
    logging.getLogger("agentflow.test").info("outside a request")
    first, second, third = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["event"] == "applied 3 events"
    assert (first["level"], first["logger"], first["position"]) == ("warning", "agentflow.test", 42)
    assert (first["tenant"], first["correlation_id"], first["request_id"]) == ("tenant-a", "corr-7", "rid-1")
    assert first["trace_id"] == TRACE
    assert datetime.fromisoformat(first["time"]).utcoffset() is not None
    assert (second["event"], second["logger"], second["position"], second["tenant"]) == (
        "bound", "agentflow.other", 43, "tenant-a"
    )
    assert third["event"] == "outside a request"
    assert not {"tenant", "correlation_id", "request_id", "trace_id", "position"} & set(third)


def test_correlation_id_defaults_to_the_request_id() -> None:
    out = io.StringIO()
    configure_logging("INFO", stream=out)
    token = REQUEST_SCOPE.set(_scope([(b"traceparent", b"garbage")], {"request_id": "rid-9"}))  # type: ignore[arg-type]
    try:
        logging.getLogger("agentflow.test").info("x")
    finally:
        REQUEST_SCOPE.reset(token)
    line = json.loads(out.getvalue())
    assert (line["correlation_id"], line["request_id"]) == ("rid-9", "rid-9")
    assert "trace_id" not in line and "tenant" not in line


def test_a_terminal_gets_the_console_renderer() -> None:
    leader, follower = os.openpty()
    with os.fdopen(follower, "w") as tty:
        configure_logging("INFO", stream=tty)
        logging.getLogger("agentflow.tty").warning("hello %s", "terminal")
        tty.flush()
        text = os.read(leader, 65536).decode()
    os.close(leader)
    assert "hello terminal" in text and "agentflow.tty" in text
    assert not text.lstrip().startswith("{")
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


# --- the access line ---------------------------------------------------------------------------------


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def _status_app(scope: Any, receive: Any, send: Any) -> None:
    status = int(scope["path"].rsplit("/", 1)[1])
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"{}", "more_body": False})


def _serve(guard: HttpGuard, statuses: list[int]) -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    async def run() -> None:
        for status in statuses:
            scope = {"type": "http", "method": "GET", "path": f"/v1/status/{status}", "headers": [],
                     "query_string": b""}  # fmt: skip
            await guard(scope, receive, send)  # type: ignore[arg-type]

    asyncio.run(run())


def _access_lines(sample: float, statuses: list[int]) -> list[logging.LogRecord]:
    lines = _Lines()
    access = logging.getLogger("agentflow.access")
    access.addHandler(lines)
    access.setLevel(logging.INFO)
    try:
        guard = HttpGuard(_status_app, HttpSettings(access_log_sample=sample), frozenset(), SloTracker([]))
        _serve(guard, statuses)
    finally:
        access.removeHandler(lines)
        access.setLevel(logging.NOTSET)
    return lines.records


def test_every_answer_but_2xx_is_logged_and_2xx_only_when_sampled() -> None:
    statuses = [200, 201, 204, 301, 400, 401, 404, 429, 500, 503]
    none_sampled = _access_lines(0.0, statuses)
    assert [r.status for r in none_sampled] == [301, 400, 401, 404, 429, 500, 503]  # type: ignore[attr-defined]
    assert [r.levelname for r in none_sampled][-2:] == ["WARNING", "WARNING"]
    assert [r.status for r in _access_lines(1.0, statuses)] == statuses  # type: ignore[attr-defined]
    line = none_sampled[0]
    assert (line.method, line.path) == ("GET", "/v1/status/301")  # type: ignore[attr-defined]
    assert line.duration_ms >= 0  # type: ignore[attr-defined]


def test_a_fraction_of_2xx_answers_is_sampled(monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard draws one random() per 2xx answer: replaying the same seed tells which are written (a
    private generator: other threads of this process may draw from the global one meanwhile)."""
    statuses = [200] * 300 + [404] * 5
    draws = random.Random(1234)
    expected = sum(draws.random() < 0.1 for _ in range(300)) + 5
    monkeypatch.setattr(http_guard, "random", random.Random(1234).random)
    got = _access_lines(0.1, statuses)
    assert len(got) == expected
    assert 5 < expected < 300  # some, not all: the sample is a fraction


def test_access_log_sample_setting() -> None:
    assert settings_from_env({}).http.access_log_sample == 0.01
    assert settings_from_env({"AGENTFLOW_ACCESS_LOG_SAMPLE": "0.25"}).http.access_log_sample == 0.25
    with pytest.raises(ConfigError):
        settings_from_env({"AGENTFLOW_ACCESS_LOG_SAMPLE": "1.5"})
    with pytest.raises(ConfigError):
        settings_from_env({"AGENTFLOW_ACCESS_LOG_SAMPLE": "-0.1"})

"""What the access log costs a request (docs/operations.md "Logs"): the front door (http_guard.py) around a
trivial ASGI app, per request, at several AGENTFLOW_ACCESS_LOG_SAMPLE values with JSON lines going to
/dev/null, and the per-request pieces on their own (timeit); CPU time, best of several runs.

    .venv/bin/python -m bench.access_log
"""

from __future__ import annotations

import asyncio
import os
import timeit
from contextvars import ContextVar
from random import random
from time import process_time
from typing import Any

from readmodels.slo import SloTracker
from services.api.http_guard import HttpGuard
from services.config import HttpSettings
from services.logs import configure_logging, log_access

REQUESTS = 20_000


async def _ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}", "more_body": False})


def guard_us(sample: float) -> float:
    """CPU microseconds per 200 answer through the front door (CPU time: the machine may be shared)."""
    guard = HttpGuard(_ok, HttpSettings(access_log_sample=sample), frozenset(), SloTracker([]))

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    def scope() -> Any:
        headers = [(b"x-api-key", b"k"), (b"accept", b"application/json")]
        return {"type": "http", "method": "GET", "path": "/v1/catalog", "headers": headers,
                "query_string": b""}  # fmt: skip

    async def run() -> float:
        for _ in range(2000):  # warm up
            await guard(scope(), receive, send)
        started = process_time()
        for _ in range(REQUESTS):
            await guard(scope(), receive, send)
        return (process_time() - started) / REQUESTS * 1e6

    return min(asyncio.run(run()) for _ in range(3))


def piece_ns(statement: str, namespace: dict[str, Any], number: int = 1_000_000) -> float:
    timer = timeit.Timer(statement, timer=process_time, globals=namespace)
    return min(timer.repeat(number=number, repeat=5)) / number * 1e9


def main() -> None:
    with open(os.devnull, "w") as devnull:
        configure_logging("INFO", stream=devnull, json=True)
        for sample in (0.0, 0.01, 0.1, 1.0):
            print(f"guard, 200 answers, sample {sample:<4}: {guard_us(sample):6.2f} us/request", flush=True)
        scope = {"type": "http", "method": "GET", "path": "/v1/catalog", "headers": [(b"x-api-key", b"k")],
                 "state": {"request_id": "abc-1", "tenant": "t"}}  # fmt: skip
        line = piece_ns("log_access(scope, 200, 0.001)", {"log_access": log_access, "scope": scope}, 20_000)
        print(f"one access line, JSON to /dev/null  : {line / 1e3:6.1f} us", flush=True)
    var: ContextVar[Any] = ContextVar("bench", default=None)
    namespace = {"var": var, "scope": {}, "state": {}, "random": random, "status": 200, "s0": 0.0, "s1": 0.01}
    print(f"REQUEST_SCOPE.set(scope)           : {piece_ns('var.set(scope)', namespace):6.1f} ns")
    store = "state['tenant'] = 't'"
    print(f"state['tenant'] = tenant            : {piece_ns(store, namespace):6.1f} ns")
    check = "status // 100 != 2 or (%s and random() < %s)"
    print(f"sampling check, sample 0            : {piece_ns(check % ('s0', 's0'), namespace):6.1f} ns")
    print(f"sampling check, sample 0.01         : {piece_ns(check % ('s1', 's1'), namespace):6.1f} ns")


if __name__ == "__main__":
    main()

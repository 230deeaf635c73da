"""What the request measurement (services/slo.py RequestMeasure: SLO tracker + Prometheus histogram) adds to
the front door (services/api/http_guard.py), per request: the same guard around a trivial ASGI app, with
its measurement vs with the SLO tracker alone (what it did before the histogram), alternating rounds.
Thread CPU time, so a busy machine's scheduling does not count.

    .venv/bin/python -m bench.http_guard_overhead [rounds]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from typing import Any

from readmodels.slo import SloTracker
from services.api.http_guard import HttpGuard
from services.config import HttpSettings

TEMPLATE = "/v1/entity/{entity_type}/{entity_id}"


async def _app(scope: Any, receive: Any, send: Any) -> None:
    scope["path_template"] = TEMPLATE  # as Litestar's router leaves it
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _sink(message: Any) -> None:
    return None


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b""}


def _scope() -> dict[str, Any]:
    headers = [(b"host", b"x"), (b"x-api-key", b"k"), (b"accept", b"*/*")]
    return {"type": "http", "method": "GET", "path": "/v1/entity/order/O-1", "query_string": b"",
            "headers": headers, "scheme": "http"}  # fmt: skip


class _TrackerOnly:
    def __init__(self, tracker: SloTracker) -> None:
        self.tracker = tracker

    def record(self, method: str, template: str | None, cls: str, status: int, seconds: float) -> None:
        self.tracker.record_request(cls, status, seconds, command=cls == "command")


async def _per_request_us(guard: HttpGuard, n: int) -> float:
    started = time.thread_time()
    for _ in range(n):
        await guard(_scope(), _receive, _sink)  # type: ignore[arg-type]
    return (time.thread_time() - started) / n * 1e6


async def _main(rounds: int, n: int = 20000) -> None:
    measured = HttpGuard(_app, HttpSettings(), frozenset(), SloTracker())  # type: ignore[arg-type]
    before = HttpGuard(_app, HttpSettings(), frozenset(), SloTracker())  # type: ignore[arg-type]
    before.measure = _TrackerOnly(before.tracker)  # type: ignore[assignment]
    await _per_request_us(measured, n)
    await _per_request_us(before, n)
    olds, news, deltas = [], [], []
    for _ in range(rounds):
        old, new = await _per_request_us(before, n), await _per_request_us(measured, n)
        olds.append(old)
        news.append(new)
        deltas.append(new - old)
    q = statistics.quantiles(deltas, n=4)
    print(f"guard without the histogram {statistics.median(olds):.2f} us, "
          f"with {statistics.median(news):.2f} us: "
          f"added {statistics.median(deltas):.2f} us per request (quartiles {q[0]:.2f}..{q[2]:.2f}, "
          f"{rounds} rounds of {n})")


if __name__ == "__main__":
    asyncio.run(_main(int(sys.argv[1]) if len(sys.argv) > 1 else 25))

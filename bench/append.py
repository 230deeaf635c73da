"""Event append throughput against a real Postgres cluster."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from commands.ports import StreamWrite
from connectors.event_store import PostgresEventStore
from domain.events import SESSION, NewEvent


def _event(session_id: str) -> NewEvent:
    return NewEvent(SESSION, session_id, "PageViewed",
                    {"session_id": session_id, "user_id": None, "page_url": "/", "product_id": None})


def _writer(store: PostgresEventStore, batch: int, seconds: float, counts: list[int], idx: int,
            latencies: list[float]) -> None:
    deadline = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < deadline:
        sid = f"SES-bench-{uuid.uuid4().hex[:16]}"
        events = [_event(sid) for _ in range(batch)]
        t0 = time.perf_counter()
        store.append("bench", [StreamWrite(SESSION, sid, 0, events)], {"actor": "bench"})
        latencies.append((time.perf_counter() - t0) * 1000)
        n += batch
    counts[idx] = n


def measure_append(
    store: PostgresEventStore, writers: int, batch: int, seconds: float = 5.0
) -> dict[str, Any]:
    """Events/s of ``writers`` threads appending ``batch`` events per new stream. The embedded
    deployment's store runs with ``notify=False`` (in-process wake-ups); pass one like it to match."""
    from bench.machine import percentile

    counts = [0] * writers
    latencies: list[float] = []
    threads = [threading.Thread(target=_writer, args=(store, batch, seconds, counts, i, latencies))
               for i in range(writers)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    return {
        "writers": writers,
        "batch": batch,
        "events": sum(counts),
        "seconds": round(elapsed, 2),
        "events_per_s": round(sum(counts) / elapsed, 1),
        "append_ms_p50": round(percentile(latencies, 50), 2),
        "append_ms_p99": round(percentile(latencies, 99), 2),
    }

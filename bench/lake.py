"""The embedded Iceberg sink's memory at start, and lake maintenance, on a lake of N events.

    python -m bench.lake build   --dir D [--events 1000000]   # write the lake through IcebergSink
    python -m bench.lake measure --dir D                      # this process: start + next batches
    python -m bench.lake maintain --dir D                     # compaction + expiry figures
    python -m bench.lake all     --dir D [--events N] [--before-root /path/to/older/checkout]

``measure`` runs in a process of its own and reports its peak RSS (``resource.getrusage``) after the
imports, after the sink's start (construct + load_checkpoint) and after applying the next
``--next`` events (order/payment events of orders already in the lake, which a bounded sink must
read back). ``--before-root`` measures the sink of another checkout (the code before this change)
first; it commits its next events, so the second measurement starts from a slightly larger lake.
The catalog is pyiceberg's SqlCatalog on sqlite (the sink is the same code on Postgres). Events are
order-heavy: every event is an order or payment event, orders in flight interleave, so the
history tables hold one row per event -- the worst case for a sink that loads them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 1, 1, tzinfo=UTC)
LIFECYCLE = ("OrderPlaced", "PaymentInitiated", "PaymentCompleted", "OrderPaymentCaptured", "OrderConfirmed",
             "OrderShipped", "OrderDelivered")  # fmt: skip


def events(total: int, in_flight: int = 2000, seed: int = 15) -> Iterator[Any]:
    """``total`` valid order/payment events (7 per order), ``in_flight`` orders interleaved."""
    from domain.events import EVENT_TYPES, RecordedEvent

    rng = random.Random(seed)
    active: list[list[Any]] = []  # [order number, next step]
    placed = 0
    for position in range(1, total + 1):
        if len(active) < in_flight:
            placed += 1
            active.append([placed, 0])
            slot = len(active) - 1
        else:
            slot = rng.randrange(len(active))
        n, step = active[slot]
        oid, pay = f"ORD-20260101-{n:07d}", f"PAY-20260101-{n:07d}"
        kind = LIFECYCLE[step]
        at = T0 + timedelta(milliseconds=position * 10)
        total = 1000 * (1 + n % 3)
        money = {"amount_minor": total, "currency": "USD"}
        if kind == "OrderPlaced":
            lines = [{"product_id": f"PROD-{n % 50:03d}", "quantity": 1 + n % 3, "unit_price_minor": 1000}]
            data: dict[str, Any] = {"order_id": oid, "user_id": f"USR-{n % 997:05d}", "currency": "USD",
                                    "channel": "web", "lines": lines,
                                    "total_minor": total}  # fmt: skip
            stream, version = oid, 1
        elif kind in ("PaymentInitiated", "PaymentCompleted"):
            data = {"payment_id": pay, "order_id": oid, **money}
            if kind == "PaymentInitiated":
                data["method"] = "card"
            stream, version = pay, 1 if kind == "PaymentInitiated" else 2
        else:
            data = {"order_id": oid}
            if kind == "OrderPaymentCaptured":
                data.update(payment_id=pay, **money)
            stream, version = oid, {"OrderPaymentCaptured": 2, "OrderConfirmed": 3, "OrderShipped": 4,
                                    "OrderDelivered": 5}[kind]  # fmt: skip
        stream_type, schema_version, _ = EVENT_TYPES[kind]
        yield RecordedEvent(
            position, "bench", stream_type, stream, version, str(uuid.UUID(int=position)), kind,
            schema_version, data, at, at, position, {"command_id": f"c{position}", "correlation_id": "c"},
        )  # fmt: skip
        if step + 1 == len(LIFECYCLE):
            active[slot] = active[-1]
            active.pop()
        else:
            active[slot][1] = step + 1


def _catalog(folder: Path) -> Any:
    from pyiceberg.catalog.sql import SqlCatalog

    folder.mkdir(parents=True, exist_ok=True)
    warehouse = (folder / "warehouse").as_uri()
    return SqlCatalog("agentflow", uri=f"sqlite:///{folder}/catalog.db", warehouse=warehouse)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def build(folder: Path, total: int, batch: int = 1000) -> dict[str, Any]:
    from connectors.iceberg_sink import IcebergSink

    catalog = _catalog(folder)
    sink = IcebergSink(catalog)  # the defaults of `agentflow up`: 5000 rows or 5 s per commit
    started = time.perf_counter()
    chunk: list[Any] = []
    for e in events(total):
        chunk.append(e)
        if len(chunk) == batch:
            sink.apply(chunk, (chunk[-1].transaction_id, chunk[-1].position), chunk[-1].position)
            chunk = []
    if chunk:
        sink.apply(chunk, (chunk[-1].transaction_id, chunk[-1].position), chunk[-1].position)
    sink.flush()
    return {"events": total, "commits": sink.commits, "seconds": round(time.perf_counter() - started, 1)}


def measure(folder: Path, next_events: int, batch: int = 1000) -> dict[str, Any]:
    """In this process: the sink's start and the next batches (the caller chose the code on sys.path)."""
    import connectors.iceberg_sink as module
    from connectors.iceberg_sink import IcebergSink

    catalog = _catalog(folder)
    for t in ("events", "orders_history", "payments_history"):
        catalog.load_table(f"agentflow.{t}")  # catalog + metadata reads belong to the baseline
    after_imports = _peak_mb()
    started = time.perf_counter()
    sink = IcebergSink(catalog)
    checkpoint, _ = sink.load_checkpoint()
    start_s = time.perf_counter() - started
    after_start = _peak_mb()
    done = int(checkpoint[1]) if checkpoint else 0
    started = time.perf_counter()
    chunk: list[Any] = []
    applied = 0
    for e in events(done + next_events):
        if e.position <= done:
            continue
        chunk.append(e)
        if len(chunk) == batch:
            sink.apply(chunk, (chunk[-1].transaction_id, chunk[-1].position), chunk[-1].position)
            applied += len(chunk)
            chunk = []
    sink.flush()
    return {
        "code": str(Path(module.__file__).resolve().parents[1]),
        "events_in_lake": done,
        "peak_rss_mb_after_imports": round(after_imports, 1),
        "peak_rss_mb_after_start": round(after_start, 1),
        "start_seconds": round(start_s, 2),
        "next_events": applied,
        "next_events_seconds": round(time.perf_counter() - started, 2),
        "peak_rss_mb_after_next_events": round(_peak_mb(), 1),
        "rows_read_back": getattr(getattr(sink, "state", None), "lookups", None),
    }


def measure_in_subprocess(folder: Path, code_root: Path, next_events: int) -> dict[str, Any]:
    """A fresh interpreter importing the sink from ``code_root``; it commits its next events to the
    lake, so a second measurement starts from a lake ``next_events`` larger."""
    out = subprocess.run(
        [sys.executable, "-P", __file__, "measure", "--dir", str(folder), "--next", str(next_events)],
        check=True, capture_output=True, text=True, cwd=str(code_root),
        env={**os.environ, "PYTHONPATH": str(code_root)},
    )  # fmt: skip
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def maintain_figures(folder: Path) -> dict[str, Any]:
    from connectors.lake_maintenance import MaintenancePolicy, maintain

    # nothing else writes this lake: expire all that may go, and the unreferenced metadata files now
    policy = MaintenancePolicy(older_than_s=0.0, retain_last=1, metadata_grace_s=0.0)
    report = maintain(_catalog(folder), policy)
    return report.as_dict()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.lake")
    p.add_argument("command", choices=("build", "measure", "maintain", "all"))
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--next", type=int, default=20_000, help="events applied after the start")
    p.add_argument("--before-root", type=Path, default=None, help="a checkout with the code before")
    args = p.parse_args(argv)
    folder = args.dir.resolve()
    if args.command == "build":
        print(json.dumps(build(folder, args.events)))
    elif args.command == "measure":
        print(json.dumps(measure(folder, args.next)))
    elif args.command == "maintain":
        print(json.dumps(maintain_figures(folder)))
    else:
        from bench.machine import machine_info

        result: dict[str, Any] = {"machine": machine_info(), "build": build(folder, args.events)}
        if args.before_root is not None:
            result["start_before"] = measure_in_subprocess(folder, args.before_root.resolve(), args.next)
        result["start_after"] = measure_in_subprocess(folder, ROOT, args.next)
        result["maintenance"] = maintain_figures(folder)
        result["maintenance_again_after_next_commit"] = _maintain_after_a_commit(folder)
        print(json.dumps(result, indent=2))
    return 0


def _maintain_after_a_commit(folder: Path) -> dict[str, Any]:
    """The pre-compaction files stay referenced by the kept checkpoint snapshot until the sink commits
    again; after one more sink commit a second run deletes them."""
    from connectors.iceberg_sink import IcebergSink

    sink = IcebergSink(_catalog(folder))
    checkpoint, _ = sink.load_checkpoint()
    done = int(checkpoint[1]) if checkpoint else 0
    chunk = [e for e in events(done + 1000) if e.position > done]
    sink.apply(chunk, (chunk[-1].transaction_id, chunk[-1].position), chunk[-1].position)
    sink.flush()
    return maintain_figures(folder)


if __name__ == "__main__":
    sys.exit(main())

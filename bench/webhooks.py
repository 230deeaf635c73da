"""Webhook benchmark: event committed -> webhook received (p50/p95), and deliveries/s of ONE worker
process. Targets on a 2-core machine: p50 <= 100 ms, >= 500 deliveries/s.

- latency: the embedded fleet (dramatiq-postgres, worker threads + relay in this process, woken by the
  event store's commit listener, as in `agentflow up`); events appended one at a time at a steady
  rate; the receiver runs in its own process and stamps arrival times.
- throughput: a backlog of events matching several endpoints is committed first, then ONE
  ``python -m services.webhooks.cli`` process (per broker: dramatiq-postgres, Redis) relays and
  delivers it; deliveries/s = deliveries / (last receipt - worker ready).

``python -m bench.webhooks`` writes docs/benchmarks/webhooks-latest.{json,md}; ``run_webhooks_bench()``
is the function ``make bench`` calls.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.machine import machine_info, percentile
from bench.tests_on_path import use_test_helpers

ROOT = Path(__file__).resolve().parents[1]
# the key of the signing secrets for this run (the stores here and the worker processes share one database)
SECRET_KEY = base64.urlsafe_b64encode(os.urandom(32)).decode()  # a Fernet key
OUT = ROOT / "docs" / "benchmarks"
TARGETS = {"latency_p50_ms": ("<=", 100.0), "deliveries_per_s_postgres": (">=", 500.0)}


def say(msg: str) -> None:
    print(f"[webhooks] {msg}", flush=True)


class _ReceiverProcess:
    def __init__(self, tmp: Path) -> None:
        port_file = tmp / "receiver.port"
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "webhook_receiver.py"), str(port_file)], cwd=ROOT
        )
        deadline = time.monotonic() + 20
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline:
                raise RuntimeError("receiver did not start")
            time.sleep(0.05)
        self.base = f"http://127.0.0.1:{int(port_file.read_text())}"

    def received(self, reset: bool = False) -> list[tuple[int, float, str]]:
        rows = httpx.get(self.base + ("/reset" if reset else "/all"), timeout=30).json()
        return [(int(p), float(at), str(path)) for p, at, path in rows]

    def wait_count(self, n: int, timeout: float) -> list[tuple[int, float, str]]:
        deadline = time.monotonic() + timeout
        while True:
            got = self.received()
            if len(got) >= n or time.monotonic() > deadline:
                return got
            time.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def _append(store: Any, tenant: str, i: int) -> tuple[int, float]:
    from commands.ports import StreamWrite
    from domain.events import NewEvent

    oid = f"ORD-{i}"
    data = {"order_id": oid, "user_id": "u1", "currency": "USD", "channel": "web", "total_minor": 1000,
            "lines": [{"product_id": "P1", "quantity": 1, "unit_price_minor": 1000}]}  # fmt: skip
    res = store.append(
        tenant, [StreamWrite("order", oid, 0, [NewEvent("order", oid, "OrderPlaced", data, 2)])], {}
    )
    return res.positions[-1], time.time()


def _latency(url: str, receiver: _ReceiverProcess, events: int, rate: float) -> dict[str, Any]:
    from connectors import webhook_signing as signing
    from connectors.database import make_engine
    from connectors.event_store import PostgresEventStore
    from connectors.secret_box import SecretBox
    from services.config import WebhookSettings
    from services.webhooks.fleet import WebhookFleet

    engine = make_engine(url, pool_size=4, max_overflow=4)
    settings = WebhookSettings(allow_private=True)
    fleet = WebhookFleet.embedded(url, settings, box=SecretBox([SECRET_KEY]))
    store = PostgresEventStore(engine, notify=False)
    store.add_commit_listener(fleet.wake)
    fleet.store.create_endpoint("lat", receiver.base + "/lat", signing.generate_secret())
    fleet.start()
    committed: dict[int, float] = {}
    try:
        for i in range(20):  # warm-up: connections, prepared statements, keep-alive
            _append(store, "warm", i)
        next_at = time.monotonic()
        for i in range(events):
            pos, at = _append(store, "lat", i)
            committed[pos] = at
            next_at += 1.0 / rate
            time.sleep(max(0.0, next_at - time.monotonic()))
        got = [r for r in receiver.wait_count(events, 60) if r[2] == "/lat"]
    finally:
        fleet.stop()
        engine.dispose()
    lat = sorted((at - committed[p]) * 1000 for p, at, _ in got if p in committed)
    return {
        "events": events, "rate_per_s": rate, "received": len(got),
        "p50_ms": round(percentile(lat, 50), 1), "p95_ms": round(percentile(lat, 95), 1),
        "p99_ms": round(percentile(lat, 99), 1), "max_ms": round(max(lat), 1) if lat else None,
    }  # fmt: skip


def _throughput(
    url: str, receiver: _ReceiverProcess, broker: str, redis_url: str | None, events: int, endpoints: int,
    threads: int, tenant: str,
) -> dict[str, Any]:  # fmt: skip
    from connectors import webhook_signing as signing
    from connectors.database import make_engine
    from connectors.event_store import PostgresEventStore
    from connectors.secret_box import SecretBox
    from connectors.webhook_store import WebhookStore

    engine = make_engine(url, pool_size=4, max_overflow=4)
    hooks = WebhookStore(engine, SecretBox([SECRET_KEY]))  # the worker gets it as AGENTFLOW_SECRET_KEYS
    for e in range(endpoints):
        hooks.create_endpoint(tenant, receiver.base + f"/{tenant}/{e}", signing.generate_secret())
    store = PostgresEventStore(engine, notify=False)
    for i in range(events):
        _append(store, tenant, i)
    receiver.received(reset=True)
    total = events * endpoints
    args = [sys.executable, "-m", "services.webhooks.cli", "--database-url", url, "--threads", str(threads)]
    if broker == "redis":
        assert redis_url
        args += ["--redis-url", redis_url]
    env = {**os.environ, "AGENTFLOW_WEBHOOK_ALLOW_PRIVATE": "1", "AGENTFLOW_LOG_LEVEL": "WARNING",
           "AGENTFLOW_SECRET_KEYS": SECRET_KEY}
    log = Path(tempfile.mkstemp(prefix="wh-worker-", suffix=".log")[1])
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        while b"worker ready" not in log.read_bytes():
            if proc.poll() is not None:
                raise RuntimeError(log.read_text())
            time.sleep(0.02)
        ready = time.time()
        got = receiver.wait_count(total, 300)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        engine.dispose()
    mine = [r for r in got if r[2].startswith(f"/{tenant}/")]
    last = max(at for _, at, _ in mine)
    ordered = all(
        [p for p, _, path in mine if path == f"/{tenant}/{e}"]
        == sorted(p for p, _, path in mine if path == f"/{tenant}/{e}")
        for e in range(endpoints)
    )
    return {
        "broker": broker, "events": events, "endpoints": endpoints, "worker_threads": threads,
        "deliveries": len(mine), "expected": total, "in_order_per_endpoint": ordered,
        "seconds": round(last - ready, 3), "deliveries_per_s": round(len(mine) / max(last - ready, 1e-9), 1),
    }  # fmt: skip


def run_webhooks_bench(
    out_dir: Path | None = OUT, latency_events: int = 300, rate: float = 50.0, events: int = 500,
    endpoints: int = 8, threads: int = 8, brokers: tuple[str, ...] = ("postgres", "redis"),
) -> dict[str, Any]:  # fmt: skip
    from connectors.postgres_cluster import PostgresCluster
    from migrations import run_migrations

    tmp = Path(tempfile.mkdtemp(prefix="agentflow-bench-webhooks-"))
    cluster = PostgresCluster(tmp / "pg")
    receiver: _ReceiverProcess | None = None
    redis = None
    result: dict[str, Any] = {"machine": machine_info(), "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    try:
        cluster.start()
        run_migrations(cluster.url)
        receiver = _ReceiverProcess(tmp)
        say(f"latency: {latency_events} events at {rate}/s, embedded fleet (dramatiq-postgres)")
        result["latency"] = _latency(cluster.url, receiver, latency_events, rate)
        say(str(result["latency"]))
        result["throughput"] = []
        for broker in brokers:
            redis_url = None
            if broker == "redis":
                if shutil.which("redis-server") is None:
                    say("redis-server not installed: skipping the Redis broker")
                    continue
                use_test_helpers()
                from redis_server import RedisServer

                redis = RedisServer().start()
                redis_url = redis.url
            say(f"throughput: {events} events x {endpoints} endpoints, one worker process ({broker})")
            t = _throughput(
                cluster.url, receiver, broker, redis_url, events, endpoints, threads, f"tp-{broker}"
            )
            say(str(t))
            result["throughput"].append(t)
    finally:
        if receiver is not None:
            receiver.stop()
        if redis is not None:
            redis.stop()
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    summary = {"latency_p50_ms": result["latency"]["p50_ms"], "latency_p95_ms": result["latency"]["p95_ms"]}
    for t in result["throughput"]:
        summary[f"deliveries_per_s_{t['broker']}"] = t["deliveries_per_s"]
    result["summary"] = summary
    result["targets"] = {
        k: {"target": f"{op} {v:g}", "value": summary.get(k),
            "met": summary.get(k) is not None and (summary[k] <= v if op == "<=" else summary[k] >= v)}
        for k, (op, v) in TARGETS.items()
    }  # fmt: skip
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "webhooks-latest.json").write_text(json.dumps(result, indent=2) + "\n")
        (out_dir / "webhooks-latest.md").write_text(render_markdown(result))
    return result


def render_markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lat = r["latency"]
    lines = [
        "# Webhook delivery benchmark",
        "",
        f"{r['at']} · {m.get('cpu', '?')} · {m.get('cores', '?')} cores · `python -m bench.webhooks`",
        "",
        "Event committed → signed webhook received by a local HTTP receiver (its own process).",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| latency p50 (embedded fleet, {lat['rate_per_s']:g} events/s) | {lat['p50_ms']} ms | ≤ 100 ms |",
        f"| latency p95 | {lat['p95_ms']} ms | |",
        f"| latency p99 | {lat['p99_ms']} ms | |",
    ]
    for t in r["throughput"]:
        lines.append(
            f"| deliveries/s, one worker process, {t['broker']} broker, {t['worker_threads']} threads, "
            f"{t['endpoints']} endpoints | {t['deliveries_per_s']} | ≥ 500 |"
        )
    lines += [
        "",
        "Targets: " + ", ".join(f"{k} {'met' if v['met'] else 'NOT met'}" for k, v in r["targets"].items()),
    ]
    lines += ["", "Every delivery arrived in position order per endpoint: "
              + str(all(t["in_order_per_endpoint"] for t in r["throughput"])), ""]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--latency-events", type=int, default=300)
    p.add_argument("--rate", type=float, default=50.0)
    p.add_argument("--events", type=int, default=500)
    p.add_argument("--endpoints", type=int, default=8)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--brokers", default="postgres,redis")
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args()
    r = run_webhooks_bench(
        None if a.no_write else OUT, a.latency_events, a.rate, a.events, a.endpoints, a.threads,
        tuple(b for b in a.brokers.split(",") if b),
    )  # fmt: skip
    print(json.dumps(r["summary"], indent=2))


if __name__ == "__main__":
    main()

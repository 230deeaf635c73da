"""``agentflow up --distributed`` heals: Kafka, Kafka Connect and the Flink mini-cluster are each killed
with SIGKILL (the real process: the broker's JVM, the Connect worker's JVM, the mini-cluster JVM under
the PyFlink client). ``/v1/health`` names the dead engine unhealthy within 5 s (and readiness answers
503), the supervisor reaps it (no zombie), restarts it, and health names it healthy again. Commands
accepted during each outage reach the read models exactly once: the order count and the revenue
after the last restart are the values read before the first kill plus exactly what was placed.
Finally ``agentflow restart connect`` restarts one engine on request.

One stack start for all of it (the heavy part: ~1-3 min on 2 busy cores); the phases are timed and
printed. Nothing sleeps: every wait polls /v1/health or reads at a position (tests/waiting.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from agentflow_process import PROJECT_ROOT, AgentFlowProcess
from waiting import eventually

from e2e.conftest import client
from services.distributed.flink_job import child_java
from services.distributed.java_process import pid_alive

pytestmark = pytest.mark.timeout(1800)

KEY = "heal-key"
DETECT_S = 5.0  # the bound: a killed engine is named unhealthy within 5 s
PATIENCE_S = 420.0  # bounds a hang of a restart on a busy machine, not a latency


def _component(api: httpx.Client, name: str) -> dict[str, Any] | None:
    body = api.get("/v1/health").json()
    return next((c for c in body["components"] if c["name"] == name), None)


def _status_is(api: httpx.Client, name: str, status: str) -> dict[str, Any] | None:
    c = _component(api, name)
    return c if c is not None and c["status"] == status else None


def _engine_pid(run_dir: Path, engine: str) -> int:
    pid_file = {"kafka": "kafka/kafka.pid", "connect": "connect/connect.pid", "flink": "flink/flink-job.pid"}
    pid = int((run_dir / pid_file[engine]).read_text().strip())
    if engine == "flink":  # the mini-cluster JVM, not the PyFlink client that launched it
        jvm = child_java(pid)
        assert jvm is not None, "no mini-cluster JVM under the Flink job client"
        return jvm
    return pid


def _place(api: httpx.Client, user: str, product: str) -> tuple[str, int]:
    line = {"product_id": product, "quantity": 1, "unit_price": "3.00"}
    r = api.post("/v1/orders", json={"user_id": user, "currency": "USD", "lines": [line]})
    assert r.status_code == 201, r.text
    return r.json()["order_id"], r.json()["position"]


def _metric(api: httpx.Client, name: str, position: int) -> Any:
    r = api.get(f"/v1/metrics/{name}", params={"window": "1h", "min_position": position})
    assert r.status_code == 200, r.text
    return r.json()["value"]


def test_each_killed_engine_is_named_restarted_and_loses_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    run_dir = data / "distributed"
    srv = AgentFlowProcess(data, f"{KEY}:tenant-heal", extra_args=("--distributed",))
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    try:
        srv.start(timeout=900)
        timings["start"] = time.monotonic() - t0
        with client(srv, KEY, patience=PATIENCE_S) as api:
            for name in ("kafka", "connect", "flink"):
                eventually(lambda n=name: _status_is(api, n, "healthy"), timeout=PATIENCE_S, what=name)
            product = api.post("/v1/products", json={"name": "Tea", "category": "kitchen", "price": "3.00",
                                                     "currency": "USD"}).json()["product_id"]  # fmt: skip
            assert api.post(f"/v1/products/{product}/restock", json={"quantity": 1000}).status_code == 200
            user = api.post("/v1/users", json={"name": "Ada"}).json()["user_id"]
            _, first = _place(api, user, product)
            base_count = _metric(api, "order_count", first)
            base_revenue = Decimal(str(_metric(api, "revenue", first)))
            placed: list[tuple[str, int]] = []

            for engine in ("kafka", "connect", "flink"):
                pid = _engine_pid(run_dir, engine)
                killed = time.monotonic()
                os.kill(pid, signal.SIGKILL)
                dead = eventually(lambda e=engine: _status_is(api, e, "unhealthy"), timeout=DETECT_S,
                                  interval=0.1, what=f"{engine} named unhealthy")  # fmt: skip
                timings[f"{engine} detected"] = time.monotonic() - killed
                assert dead["message"], dead
                assert api.get("/v1/health/ready").status_code == 503
                placed += [_place(api, user, product) for _ in range(5)]  # commands keep being accepted
                eventually(lambda e=engine: _status_is(api, e, "healthy"), timeout=PATIENCE_S, interval=0.2,
                           what=f"{engine} healthy again")  # fmt: skip
                timings[f"{engine} healthy again"] = time.monotonic() - killed
                assert not pid_alive(pid)
                # reaped: no zombie left under agentflow up (the JVM under the Flink client is reaped
                # with its process group)
                eventually(lambda p=pid: not Path(f"/proc/{p}").exists(), timeout=60, what=f"{pid} reaped")
                assert f"{engine} died (" in srv.log.read_text(errors="replace")  # anywhere in the log
                eventually(lambda: api.get("/v1/health/ready").status_code == 200, timeout=PATIENCE_S,
                           what="ready again")  # fmt: skip

            placed.append(_place(api, user, product))
            last = max(p for _, p in placed)
            count = _metric(api, "order_count", last)
            revenue = Decimal(str(_metric(api, "revenue", last)))
            assert count == base_count + len(placed)
            assert revenue == base_revenue + 3 * len(placed)
            for oid, pos in placed:
                got = api.get(f"/v1/entity/order/{oid}", params={"min_position": pos})
                assert got.status_code == 200 and got.json()["data"]["total_amount"] == 3.0, got.text

            before = _engine_pid(run_dir, "connect")
            asked = time.monotonic()
            restart = subprocess.run(
                [sys.executable, "-m", "services.cli", "restart", "connect", "--data-dir", str(data)],
                cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            timings["restart connect (CLI)"] = time.monotonic() - asked
            assert restart.returncode == 0, restart.stdout + restart.stderr
            assert "connect: ok" in restart.stdout
            assert _engine_pid(run_dir, "connect") != before and not pid_alive(before)
            eventually(lambda: _status_is(api, "connect", "healthy"), timeout=PATIENCE_S, what="connect")
        timings["total"] = time.monotonic() - t0
        print("healing timings (s):", {k: round(v, 1) for k, v in timings.items()})
    finally:
        stopped = subprocess.run(
            [sys.executable, "-m", "services.cli", "down", "--data-dir", str(data)],
            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if srv.proc is not None and srv.proc.poll() is None:
            print(srv.tail(4000))
            srv.stop()
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr

"""The front door of the distributed deployment: ``agentflow up --distributed`` starts Postgres, Kafka,
Connect + Debezium, the Flink job and the API under one data dir; ``agentflow down`` stops all of it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from agentflow_process import PROJECT_ROOT, AgentFlowProcess

from e2e.conftest import client
from services.distributed.java_process import pid_alive

pytestmark = pytest.mark.timeout(900)


def _pids(run_dir: Path) -> dict[str, int]:
    out = {}
    for f in run_dir.rglob("*.pid"):
        try:
            out[f.name] = int(f.read_text().strip())
        except ValueError:
            continue
    return out


def _down(data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "down", "--data-dir", str(data_dir)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_up_distributed_serves_a_write_through_every_engine_and_down_stops_everything(tmp_path: Path) -> None:
    srv = AgentFlowProcess(tmp_path / "data", "up-key:tenant-up", extra_args=("--distributed",))
    try:
        srv.start(timeout=600)
        engines = _pids(tmp_path / "data" / "distributed")
        assert {"kafka.pid", "connect.pid", "flink-job.pid"} <= set(engines), engines
        with client(srv, "up-key", patience=300.0) as api:  # asks again until the pipeline applied it
            r = api.post("/v1/products", json={"name": "Kettle", "category": "home", "price": "30.00",
                                               "currency": "EUR"})  # fmt: skip
            assert r.status_code == 201, r.text
            pid, position = r.json()["product_id"], r.json()["position"]
            got = api.get(f"/v1/entity/product/{pid}", params={"min_position": position})
            assert got.status_code == 200, got.text
            assert got.json()["data"]["price"] == 30.0
            health = api.get("/v1/health").json()
            loader = next(c for c in health["components"] if c["name"] == "projector")
            assert loader["metrics"]["name"] == "serving-loader"
        down = _down(tmp_path / "data")
        assert down.returncode == 0, down.stdout + down.stderr
        assert srv.proc is not None
        assert srv.proc.wait(timeout=30) == 0
        assert not [name for name, p in engines.items() if pid_alive(p)], "an engine outlived agentflow down"
    finally:
        if srv.proc is not None and srv.proc.poll() is None:
            print(srv.tail(3000))
            srv.stop()
        _down(tmp_path / "data")  # an engine a failed run left behind (a no-op after a clean down)

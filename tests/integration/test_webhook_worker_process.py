"""The distributed fleet: ``agentflow worker`` processes on a real Redis broker. A worker is killed
with SIGKILL while a delivery is on the wire; a restarted worker completes it (same webhook-id) and
nothing is lost or reordered."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_server import RedisServer
from sqlalchemy.engine import Engine
from standardwebhooks import Webhook
from webhook_helpers import append_order, eventually
from webhook_receiver import Receiver, Reply

from connectors.event_store import PostgresEventStore
from connectors.webhook_store import WebhookStore
from services.workers import signing

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


class WorkerProcess:
    def __init__(self, pg_url: str, redis_url: str, log: Path) -> None:
        self.args = [sys.executable, "-m", "services.workers.cli", "--database-url", pg_url,
                     "--redis-url", redis_url, "--threads", "4"]  # fmt: skip
        self.env = {
            **os.environ, "AGENTFLOW_WEBHOOK_ALLOW_PRIVATE": "1",
            "AGENTFLOW_WEBHOOK_RETRY_SCHEDULE": "0,0.5,0.5,0.5",
            "AGENTFLOW_WEBHOOK_TIMEOUT_S": "3", "AGENTFLOW_WEBHOOK_LEASE_MARGIN_S": "1",
            "AGENTFLOW_WEBHOOK_SWEEP_S": "0.5", "AGENTFLOW_LOG_LEVEL": "WARNING",
        }  # fmt: skip
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.args, env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
            )
        eventually(lambda: b"worker ready" in self.log.read_bytes() or self.proc.poll() is not None, 60)  # type: ignore[union-attr]
        assert self.proc.poll() is None, self.log.read_text()
        return self

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def test_kill_9_mid_delivery_then_restart_completes_it(
    engine: Engine, pg_url: str, redis: RedisServer, tmp_path: Path
) -> None:
    hooks = WebhookStore(engine)
    store = PostgresEventStore(engine, notify=False)
    with Receiver() as receiver:
        secret = signing.generate_secret()
        ep = hooks.create_endpoint("t1", receiver.base + "/slow", secret)
        # the first request hangs (the worker is killed while waiting for the answer); the rest succeed
        receiver.script("/slow", Reply(200, delay_s=20))
        worker = WorkerProcess(pg_url, redis.url, tmp_path / "worker.log").start()
        on_wire = threading.Event()
        receiver.on_receive = lambda rec: on_wire.set()
        try:
            first = append_order(store, "t1")
            assert on_wire.wait(20), (tmp_path / "worker.log").read_text()
            worker.kill9()  # mid-delivery: the request is on the wire, no answer recorded
            [d] = hooks.list_deliveries("t1", ep.id)
            assert d.status == "delivering" and d.attempts == 1
            second = append_order(store, "t1")  # committed while no worker runs
            worker = WorkerProcess(pg_url, redis.url, tmp_path / "worker2.log").start()
            recs = receiver.wait_for("/slow", 3, timeout=40)
            done = eventually(
                lambda: (
                    [x for x in hooks.list_deliveries("t1", ep.id) if x.status == "succeeded"] or None
                    if len([x for x in hooks.list_deliveries("t1", ep.id) if x.status == "succeeded"]) == 2
                    else None
                ),
                30,
            )
        finally:
            worker.stop()
    positions = [r.json()["position"] for r in recs]
    assert positions == [first, first, second], positions
    assert recs[0].headers["webhook-id"] == recs[1].headers["webhook-id"] != recs[2].headers["webhook-id"]
    for r in recs:
        Webhook(secret).verify(r.body, r.headers)
    by_pos = {x.position: x for x in done}
    assert [a["outcome"] for a in by_pos[first].attempt_log] == ["interrupted", "succeeded"]
    assert [a["outcome"] for a in by_pos[second].attempt_log] == ["succeeded"]


def test_two_worker_processes_share_the_load_without_duplicates(
    engine: Engine, pg_url: str, redis: RedisServer, tmp_path: Path
) -> None:
    hooks = WebhookStore(engine)
    store = PostgresEventStore(engine, notify=False)
    with Receiver() as receiver:
        eps = [
            hooks.create_endpoint("t1", receiver.base + f"/ep{i}", signing.generate_secret())
            for i in range(4)
        ]
        workers = [WorkerProcess(pg_url, redis.url, tmp_path / f"w{i}.log").start() for i in range(2)]
        try:
            positions = [append_order(store, "t1") for _ in range(20)]
            for i in range(4):
                recs = receiver.wait_for(f"/ep{i}", 20, timeout=40)
                assert [r.json()["position"] for r in recs] == positions

            def all_succeeded() -> bool:
                return all(
                    sum(d.status == "succeeded" for d in hooks.list_deliveries("t1", ep.id, limit=100)) == 20
                    for ep in eps
                )

            eventually(all_succeeded, 20)
        finally:
            for w in workers:
                w.stop()
        assert len(receiver.received) == 80

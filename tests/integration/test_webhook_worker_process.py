"""The distributed fleet: ``agentflow worker`` processes on a real Redis broker. A worker is killed
with SIGKILL while a delivery is on the wire; a restarted worker completes it (same webhook-id) and
nothing is lost or reordered."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from redis_server import RedisServer
from secret_keys import TEST_BOX, TEST_SECRET_KEYS
from sqlalchemy.engine import Engine
from standardwebhooks import Webhook
from waiting import eventually
from webhook_helpers import append_order
from webhook_receiver import Receiver, Reply

from connectors import webhook_signing as signing
from connectors.event_store import PostgresEventStore
from connectors.webhook_store import WebhookStore
from readmodels.webhooks import Delivery

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    def __init__(self, pg_url: str, redis_url: str, log: Path) -> None:
        self.args = [sys.executable, "-m", "services.webhooks.cli", "--database-url", pg_url,
                     "--redis-url", redis_url, "--threads", "4"]  # fmt: skip
        self.env = {
            **os.environ, "AGENTFLOW_WEBHOOK_ALLOW_PRIVATE": "1",
            "AGENTFLOW_WEBHOOK_RETRY_SCHEDULE": "0,0.5,0.5,0.5",
            "AGENTFLOW_WEBHOOK_TIMEOUT_S": "5", "AGENTFLOW_WEBHOOK_LEASE_MARGIN_S": "1",
            "AGENTFLOW_WEBHOOK_SWEEP_S": "0.5", "AGENTFLOW_LOG_LEVEL": "WARNING",
            "AGENTFLOW_SECRET_KEYS": ",".join(TEST_SECRET_KEYS),
        }  # fmt: skip
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        """Start and wait until it is ready; a start that fails (or times out) stops the process."""
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.args, env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
            )
        proc = self.proc
        try:
            eventually(
                lambda: b"worker ready" in self.log.read_bytes() or proc.poll() is not None,
                120,
                what=lambda: self.log.read_text(errors="replace"),
            )
            assert proc.poll() is None, self.log.read_text(errors="replace")
        except BaseException:
            self.stop()
            raise
        return self

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.wait()


def test_kill_9_mid_delivery_then_restart_completes_it(
    engine: Engine, pg_url: str, redis: RedisServer, tmp_path: Path
) -> None:
    hooks = WebhookStore(engine, TEST_BOX)
    store = PostgresEventStore(engine, notify=False)
    with Receiver() as receiver:
        secret = signing.generate_secret()
        ep = hooks.create_endpoint("t1", receiver.base + "/slow", secret)
        # the first request is never answered (the worker is killed while waiting for the answer; the
        # receiver lets the handler go when it stops); the rest succeed
        receiver.script("/slow", Reply(200, release=threading.Event()))
        on_wire = threading.Event()
        receiver.on_receive = lambda rec: on_wire.set()
        worker = WorkerProcess(pg_url, redis.url, tmp_path / "worker.log")
        restarted = WorkerProcess(pg_url, redis.url, tmp_path / "worker2.log")
        try:
            worker.start()
            first = append_order(store, "t1")
            assert on_wire.wait(60), (tmp_path / "worker.log").read_text()
            worker.kill9()  # mid-delivery: the request is on the wire, no answer recorded
            [d] = hooks.list_deliveries("t1", ep.id)
            assert d.status == "delivering" and d.attempts == 1
            second = append_order(store, "t1")  # committed while no worker runs
            restarted.start()
            receiver.wait_for("/slow", 3, timeout=120)

            def both_succeeded() -> list[Delivery] | None:
                rows = hooks.list_deliveries("t1", ep.id)
                return rows if [x.status for x in rows] == ["succeeded", "succeeded"] else None

            done = eventually(both_succeeded, 120)
            # nothing sent twice: a later event is the very next request
            marker = append_order(store, "t1")
            receiver.wait_for("/slow", 4, timeout=120)
        finally:
            worker.stop()
            restarted.stop()
    positions = [r.json()["position"] for r in receiver.at("/slow")]
    assert positions == [first, first, second, marker], positions
    recs = receiver.at("/slow")[:3]
    assert recs[0].headers["webhook-id"] == recs[1].headers["webhook-id"] != recs[2].headers["webhook-id"]
    for r in recs:
        Webhook(secret).verify(r.body, r.headers)
    by_pos = {x.position: x for x in done}
    assert [a["outcome"] for a in by_pos[first].attempt_log] == ["interrupted", "succeeded"]
    assert [a["outcome"] for a in by_pos[second].attempt_log] == ["succeeded"]


def test_two_worker_processes_share_the_load_without_duplicates(
    engine: Engine, pg_url: str, redis: RedisServer, tmp_path: Path
) -> None:
    hooks = WebhookStore(engine, TEST_BOX)
    store = PostgresEventStore(engine, notify=False)
    with Receiver() as receiver:
        eps = [
            hooks.create_endpoint("t1", receiver.base + f"/ep{i}", signing.generate_secret())
            for i in range(4)
        ]
        workers = [WorkerProcess(pg_url, redis.url, tmp_path / f"w{i}.log") for i in range(2)]
        try:
            for w in workers:
                w.start()
            positions = [append_order(store, "t1") for _ in range(20)]
            for i in range(4):
                recs = receiver.wait_for(f"/ep{i}", 20, timeout=120)
                assert [r.json()["position"] for r in recs] == positions

            def all_succeeded() -> bool:
                return all(
                    sum(d.status == "succeeded" for d in hooks.list_deliveries("t1", ep.id, limit=100)) == 20
                    for ep in eps
                )

            eventually(all_succeeded, 120)
            assert len(receiver.received) == 80
            # nothing sent twice: a later event is the very next request at every endpoint
            marker = append_order(store, "t1")
            for i in range(4):
                receiver.wait_for(f"/ep{i}", 21, timeout=120)
        finally:
            for w in workers:
                w.stop()
        for i in range(4):
            assert [r.json()["position"] for r in receiver.at(f"/ep{i}")] == [*positions, marker]
        assert len(receiver.received) == 84

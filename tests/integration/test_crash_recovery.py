"""kill -9 the ClickHouse projector mid-stream, restart it, and compare with a rebuild from position 0.

The projector runs in a subprocess (chdb holds its data path per process). This file is also the
subprocess's entry point: ``python test_crash_recovery.py project|verify ...``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from waiting import eventually

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TENANT = "crash-t"
TENANT2 = "crash-u"
HANG_S = 120.0  # bounds a hang (a projector subprocess on a loaded machine); never a latency
LAG = 300  # writers stay at most this many positions ahead of what a projector has applied
MIN_STEPS = 15  # each writer's completed steps before the last kill: enough rows to compare


# --- subprocess side --------------------------------------------------------------------------


def _projector(pg_url: str, chdb_path: str, batch_size: int, progress: Path, kill_on_save: int) -> None:
    from connectors.checkpoints import CheckpointStore
    from connectors.clickhouse import ClickHouseStore
    from connectors.clickhouse_sink import ClickHouseSink
    from connectors.database import make_engine
    from connectors.tailer import PostgresTailer, TailCursor
    from projections.runner import ProjectionRunner

    engine = make_engine(pg_url, pool_size=2)
    checkpoints: Any = CheckpointStore(engine)
    if kill_on_save:
        real = checkpoints

        class Dying:
            saves = 0

            def load(self, name: str) -> Any:
                return real.load(name)

            def save(self, name: str, cursor: Any, watermark: int) -> None:
                Dying.saves += 1
                if Dying.saves >= kill_on_save:  # rows of this batch are written, checkpoint is not
                    os.kill(os.getpid(), signal.SIGKILL)
                real.save(name, cursor, watermark)

        checkpoints = Dying()
    store = ClickHouseStore(f"chdb://{chdb_path}")
    sink = ClickHouseSink(store, checkpoints, cache_size=500)  # small cache: exercise FINAL point reads

    def report(events: Any, watermark: int) -> None:
        tmp = progress.with_suffix(".tmp")
        tmp.write_text(
            json.dumps({"watermark": watermark, "applied": runner.status.applied, "pid": os.getpid()})
        )
        tmp.replace(progress)

    runner = ProjectionRunner(
        "clickhouse",
        PostgresTailer(engine),
        sink,
        batch_size=batch_size,
        on_applied=report,
        start_cursor=TailCursor(0, 0),
        idle_wait=0.05,
    )
    stop = threading.Event()
    # SIGTERM = orderly stop (as `agentflow up`): the runner flushes the sink's deferred writes
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    runner.run(stop)


def _verify(pg_url: str, chdb_path: str, target: int) -> None:
    """Catch up, rebuild from position 0 into another database, print the comparison."""
    from connectors.clickhouse import ClickHouseStore
    from connectors.clickhouse_sink import ClickHouseSink
    from connectors.database import make_engine
    from connectors.event_store import PostgresEventStore
    from projections.rows import TABLES
    from projections.runner import rebuild

    engine = make_engine(pg_url, pool_size=2)
    es = PostgresEventStore(engine)
    live = ClickHouseStore(f"chdb://{chdb_path}")
    fresh = live.on_database("rebuild")
    fresh.drop_all()
    fresh.ensure_schema()

    def all_events() -> Any:
        after = 0
        while True:
            chunk = es.read_all(after_position=after, limit=1000, max_position=target)
            if not chunk:
                return
            yield from chunk
            after = chunk[-1].position

    count = rebuild(all_events(), ClickHouseSink(fresh, None))
    result: dict[str, Any] = {"rebuilt": count, "tables": {}}
    for tenant in (TENANT, TENANT2):
        for table in TABLES:
            a = sorted(repr(sorted(r.items())) for r in live.select_rows(table, tenant))
            b = sorted(repr(sorted(r.items())) for r in fresh.select_rows(table, tenant))
            set_a, set_b = set(a), set(b)
            result["tables"][f"{tenant}.{table}"] = {
                "live": len(a),
                "rebuilt": len(b),
                "equal": a == b,
                "only_live": [x for x in a if x not in set_b][:3],
                "only_rebuilt": [x for x in b if x not in set_a][:3],
            }
    print(json.dumps(result))


# --- test side --------------------------------------------------------------------------------


@contextmanager
def _spawned(*args: str) -> Iterator[subprocess.Popen[str]]:
    """This file as a subprocess; killed (if still running) and reaped on the way out, whatever
    happened in between."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    proc = subprocess.Popen(
        [sys.executable, __file__, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=HANG_S)  # reap it and close its pipes


class Writer:
    """Appends a realistic mix of events (orders with reservations, cancels, payments, sessions)."""

    def __init__(self, store: Any, tenant: str, seed: int) -> None:
        self.store = store
        self.tenant = tenant
        self.rnd = random.Random(seed)
        self.versions: dict[tuple[str, str], int] = {}
        self.n = 0
        self.commands = 0
        self.last_position = 0
        self.prefix = f"{tenant}-{seed}"

    def write(
        self,
        stream_type: str,
        stream_id: str,
        events: list[tuple[str, dict[str, Any]]],
        extra: list[Any] | None = None,
    ) -> None:
        from commands.ports import StreamWrite
        from domain.events import EVENT_TYPES, NewEvent

        writes = []
        for st, sid, evs in [(stream_type, stream_id, events), *(extra or [])]:
            news = [NewEvent(st, sid, et, data, EVENT_TYPES[et][1]) for et, data in evs]
            writes.append(StreamWrite(st, sid, self.versions.get((st, sid), 0), news))
        result = self.store.append(
            self.tenant, writes, {"command_id": f"{self.prefix}-c{self.commands}", "actor": "test"}
        )
        for w in writes:
            self.versions[(w.stream_type, w.stream_id)] = self.versions.get(
                (w.stream_type, w.stream_id), 0
            ) + len(w.events)
        self.commands += 1
        self.last_position = max(self.last_position, result.last_position)

    def setup(self) -> None:
        for i in range(1, 4):
            pid = f"PROD-{self.prefix}-{i}"
            self.write(
                "product",
                pid,
                [
                    (
                        "ProductRegistered",
                        {
                            "product_id": pid,
                            "name": f"P{i}",
                            "category": ["a", "b", "c"][i - 1],
                            "price_minor": 100 * i,
                            "currency": "USD",
                        },
                    ),
                    ("StockReceived", {"product_id": pid, "quantity": 100000}),
                ],
            )
        self.write(
            "user",
            f"USR-{self.prefix}",
            [("UserRegistered", {"user_id": f"USR-{self.prefix}", "name": "n", "email": "e", "region": "r"})],
        )

    def step(self) -> None:
        r = self.rnd
        self.n += 1
        oid = f"ORD-{self.prefix}-{self.n}"
        pid = f"PROD-{self.prefix}-{r.randint(1, 3)}"
        qty = r.randint(1, 3)
        cur = r.choice(["USD", "EUR"])
        lines = [{"product_id": pid, "quantity": qty, "unit_price_minor": 250}]
        self.write(
            "order",
            oid,
            [
                (
                    "OrderPlaced",
                    {
                        "order_id": oid,
                        "user_id": f"USR-{self.prefix}",
                        "currency": cur,
                        "channel": "web",
                        "lines": lines,
                        "total_minor": 250 * qty,
                    },
                )
            ],
            extra=[
                ("product", pid, [("StockReserved", {"product_id": pid, "order_id": oid, "quantity": qty})])
            ],
        )
        roll = r.random()
        if roll < 0.3:
            self.write(
                "order",
                oid,
                [("OrderCancelled", {"order_id": oid, "reason": "x"})],
                extra=[
                    (
                        "product",
                        pid,
                        [("StockReleased", {"product_id": pid, "order_id": oid, "quantity": qty})],
                    )
                ],
            )
        elif roll < 0.7:
            pay = f"PAY-{self.prefix}-{self.n}"
            self.write(
                "payment",
                pay,
                [
                    (
                        "PaymentInitiated",
                        {
                            "payment_id": pay,
                            "order_id": oid,
                            "amount_minor": 250 * qty,
                            "currency": cur,
                            "method": "card",
                        },
                    ),
                    (
                        "PaymentCompleted",
                        {"payment_id": pay, "order_id": oid, "amount_minor": 250 * qty, "currency": cur},
                    ),
                ],
            )
            self.write(
                "order",
                oid,
                [
                    (
                        "OrderPaymentCaptured",
                        {"order_id": oid, "payment_id": pay, "amount_minor": 250 * qty, "currency": cur},
                    ),
                    ("OrderConfirmed", {"order_id": oid}),
                ],
            )
        sid = f"SES-{self.prefix}-{r.randint(1, 20)}"
        kind = r.choice(["PageViewed", "ElementClicked", "ItemAddedToCart", "CheckoutStarted"])
        self.write(
            "session",
            sid,
            [
                (
                    kind,
                    {
                        "session_id": sid,
                        "user_id": None,
                        "page_url": f"/{r.randint(1, 9)}",
                        "product_id": None,
                    },
                )
            ],
        )


def _progress(path: Path) -> dict[str, int]:
    try:
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return {"watermark": 0, "applied": 0, "pid": 0}


def _wait_progress(path: Path, proc: subprocess.Popen[str], cond: Any) -> None:
    """Until ``proc`` reported progress that satisfies ``cond``; fails at once if it exited."""

    def reached() -> bool:
        p = _progress(path)
        if p.get("pid") == proc.pid and cond(p):
            return True
        if proc.poll() is not None:
            pytest.fail(f"projector exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        return False

    eventually(reached, timeout=HANG_S, what=lambda: f"progress {_progress(path)} of pid {proc.pid}")


def test_kill_9_mid_batch_then_restart_equals_rebuild(engine: Any, pg_url: str, tmp_path: Path) -> None:
    from connectors.event_store import PostgresEventStore

    store = PostgresEventStore(engine)
    writers = [Writer(store, TENANT, 1), Writer(store, TENANT, 2), Writer(store, TENANT2, 3)]
    for w in writers:
        w.setup()
    chdb_path = str(tmp_path / "chdb")
    progress = tmp_path / "progress.json"
    stop = threading.Event()
    errors: list[BaseException] = []
    rnd = random.Random(7)

    def write_loop(w: Writer) -> None:
        try:
            while not stop.is_set():
                w.step()
                # paced by the projectors, not by time: at most LAG positions ahead of the last
                # watermark a projector reported (a killed one's report stands until the next runs)
                eventually(
                    lambda: stop.is_set() or _progress(progress)["watermark"] >= w.last_position - LAG,
                    timeout=HANG_S,
                    what=lambda: f"a projector applying up to {w.last_position - LAG}",
                )
        except BaseException as exc:  # surfaced by the test
            errors.append(exc)

    threads = [threading.Thread(target=write_loop, args=(w,), daemon=True) for w in writers]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    try:
        # 1) rows written, checkpoint not saved: the process dies inside apply() on its 3rd save
        with _spawned("project", pg_url, chdb_path, "50", str(progress), "3") as proc:
            assert proc.wait(HANG_S) == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
        # 2) kill -9 at arbitrary moments while the writers append: once the projector has applied
        #    a random number of events (including any it re-applies after the previous kill)
        for last in (False, True):
            with _spawned("project", pg_url, chdb_path, "50", str(progress), "0") as proc:
                target = rnd.randint(1, 150)
                _wait_progress(progress, proc, lambda p, n=target: p["applied"] >= n)
                if last:  # the projector runs, so the writers do too (step n is done once n+1 began)
                    eventually(lambda: min(w.n for w in writers) > MIN_STEPS, timeout=HANG_S)
                proc.send_signal(signal.SIGKILL)
                assert proc.wait(HANG_S) == -signal.SIGKILL
    finally:
        stop.set()
        for t in threads:
            t.join(HANG_S)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    head = max(w.last_position for w in writers)
    print(f"\nwriters done at {time.monotonic() - t0:.1f}s, head {head}, progress {_progress(progress)}")

    # 3) restart, catch up, stop; then verify against a rebuild from position 0
    with _spawned("project", pg_url, chdb_path, "500", str(progress), "0") as proc:
        try:
            _wait_progress(progress, proc, lambda p: p["watermark"] >= head)
        finally:
            proc.send_signal(signal.SIGTERM)  # orderly stop: flushes the sink
        assert proc.wait(HANG_S) == 0, proc.stderr.read() if proc.stderr else ""
    print(f"caught up at {time.monotonic() - t0:.1f}s")
    with _spawned("verify", pg_url, chdb_path, str(head)) as verify:
        out, err = verify.communicate(timeout=300)
    assert verify.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    print(f"verified at {time.monotonic() - t0:.1f}s")
    assert result["rebuilt"] >= head // 2
    bad = {k: v for k, v in result["tables"].items() if not v["equal"]}
    assert not bad, bad
    assert result["tables"][f"{TENANT}.orders"]["live"] > 10
    assert result["tables"][f"{TENANT2}.events"]["live"] > 10


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    mode = sys.argv[1]
    if mode == "project":
        _projector(sys.argv[2], sys.argv[3], int(sys.argv[4]), Path(sys.argv[5]), int(sys.argv[6]))
    elif mode == "verify":
        _verify(sys.argv[2], sys.argv[3], int(sys.argv[4]))

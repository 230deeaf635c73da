"""Legacy CDC benchmark: a row committed in a legacy shop database -> AgentFlow reflects it.

For each deployment (embedded: the Debezium embedded engine inside ``agentflow up``; distributed:
``agentflow up --distributed``, Debezium on Kafka Connect -> Kafka -> ingest -> Flink -> serving loader)
and each legacy database (a Postgres cluster and a MariaDB server of their own, tests/legacy_databases.py):

1. the legacy shop gets a small catalogue with plenty of stock; both sources are added over the admin
   API (``POST /v1/admin/sources``); the snapshot must show every product in the read model;
2. warm-up: a few restocks (``StockReceived``, no orders) until the capture streams and they are visible;
3. N orders are placed one at a time through the legacy app's writer (one transaction each, paced every
   ``--interval-ms``); the commit time is ``time.time()`` right after the writer's COMMIT returned;
4. visible time = arrival of the order's ``OrderPlaced`` on ``GET /v1/stream/events`` (SSE, one
   stream per tenant, read in its own thread). The stream sends an event only after the serving read
   models applied it (the embedded ProjectionRunner and the distributed ServingLoader both call
   ``Runtime._on_applied`` -> ``AppliedEventHub.on_applied`` after the ClickHouse write, and the hub
   publishes up to the watermark); a second thread reads ``GET /v1/entity/order/{id}`` for every
   arrival to check the order is really there by then;
5. checks (the run fails, writing nothing, otherwise): every order arrived, ``order_count`` (24h) of
   each tenant equals N, no failed ``cdc`` dead letters. The capture status (state, lag_seconds,
   counters) from ``GET /v1/admin/sources`` is recorded.

``python -m bench.legacy_cdc [--deployment embedded|distributed|both] [--orders N] [--interval-ms M]``
writes docs/benchmarks/legacy-cdc-latest.json and .md (machine, date) and compares with the previous
run (moved to legacy-cdc-previous.json).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import shutil
import signal
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from bench.machine import UNTHROTTLED, machine_info, percentile
from bench.tests_on_path import use_test_helpers

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "benchmarks"
DEPLOYMENTS = ("embedded", "distributed")
DATABASES = ("postgres", "mariadb")
# kind -> (source name, API key, tenant, id prefix)
SOURCES = {
    "postgres": ("bench_pg", "bench-pg-key", "bench-legacy-pg", "PG-"),
    "mariadb": ("bench_maria", "bench-maria-key", "bench-legacy-maria", "MA-"),
}
KEYS = ",".join(f"{key}:{tenant}" for _, key, tenant, _ in SOURCES.values())
PRODUCTS = 5
STOCK = 1_000_000
WARMUP_RESTOCKS = 3
CUSTOMERS = 10
START_TIMEOUT = {"embedded": 240.0, "distributed": 600.0}
SNAPSHOT_TIMEOUT = {"embedded": 240.0, "distributed": 480.0}
VISIBLE_TIMEOUT = 180.0


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] [legacy-cdc] {msg}", flush=True)


def _ms(values: list[float], p: float) -> float | None:
    return round(percentile(values, p), 1) if values else None


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# -- SSE: OrderPlaced arrivals per tenant ------------------------------------------------------------


class OrderStream(threading.Thread):
    """``GET /v1/stream/events?event_type=OrderPlaced`` of one tenant; stamps each frame's arrival
    (``time.time()`` when its ``data:`` line was read) by entity id. ``heartbeat=1`` keeps lines
    coming, so the loop sees ``stop()`` within about a second."""

    def __init__(self, base: str, key: str) -> None:
        super().__init__(name=f"sse-{key}", daemon=True)
        self.base, self.key = base, key
        self.arrivals: dict[str, tuple[float, dict[str, Any]]] = {}
        self.frames = 0
        self.opened = threading.Event()
        self.error: BaseException | None = None
        self.checks: queue.Queue[str] = queue.Queue()
        self._halt = threading.Event()
        self._cond = threading.Condition()

    def run(self) -> None:
        try:
            with httpx.Client(timeout=httpx.Timeout(10.0, read=30.0)) as client, client.stream(
                "GET", self.base + "/v1/stream/events", headers={"X-API-Key": self.key},
                params={"event_type": "OrderPlaced", "heartbeat": "1"},
            ) as resp:  # fmt: skip
                if resp.status_code != 200:
                    resp.read()
                    raise RuntimeError(f"event stream answered {resp.status_code}: {resp.text}")
                for line in resp.iter_lines():
                    if self._halt.is_set():
                        return
                    if line.startswith(": stream open"):
                        self.opened.set()
                    elif line.startswith("data: "):
                        now = time.time()
                        event = json.loads(line[6:])
                        entity_id = str(event["entity_id"])
                        with self._cond:
                            self.frames += 1
                            self.arrivals.setdefault(entity_id, (now, event))
                            self._cond.notify_all()
                        self.checks.put(entity_id)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            if not self._halt.is_set():
                self.error = exc
        finally:
            self.opened.set()
            with self._cond:
                self._cond.notify_all()

    def wait_for(self, ids: set[str], timeout: float) -> set[str]:
        """The ids still missing after waiting up to ``timeout`` seconds for all of them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                missing = ids - self.arrivals.keys()
                left = deadline - time.monotonic()
                if not missing or left <= 0 or self.error is not None or not self.is_alive():
                    return missing
                self._cond.wait(timeout=min(left, 1.0))

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)


class EntityChecker(threading.Thread):
    """Reads ``/v1/entity/order/{id}`` for each SSE arrival: is the order there when SSE says so?"""

    def __init__(self, base: str, key: str, ids: queue.Queue[str]) -> None:
        super().__init__(name=f"check-{key}", daemon=True)
        self.base, self.key, self.ids = base, key, ids
        self.found = 0
        self.missing: list[str] = []
        self._halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.base, headers={"X-API-Key": self.key}, timeout=30.0) as api:
            while not self._halt.is_set() or not self.ids.empty():
                try:
                    entity_id = self.ids.get(timeout=0.2)
                except queue.Empty:
                    continue
                try:
                    ok = api.get(f"/v1/entity/order/{entity_id}").status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    self.found += 1
                else:
                    self.missing.append(entity_id)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=60)


# -- helpers over the API -----------------------------------------------------------------------------


def declaration(db: Any) -> dict[str, Any]:
    name, _key, tenant, prefix = SOURCES[db.kind]
    return dict(db.declaration(name, tenant, id_prefix=prefix))


def source_status(api: httpx.Client, name: str) -> dict[str, Any]:
    r = api.get(f"/v1/admin/sources/{name}")
    return r.json() if r.status_code == 200 else {"http_status": r.status_code, "body": r.text[:500]}


def products_on_hand(api: httpx.Client, prefix: str) -> dict[str, int]:
    r = api.post("/v1/query", json={"sql": "SELECT product_id, on_hand FROM products", "limit": 1000})
    if r.status_code != 200:
        return {}
    return {row["product_id"]: int(row["on_hand"] or 0) for row in r.json()["rows"]
            if str(row["product_id"]).startswith(prefix)}  # fmt: skip


def wait_on_hand(api: httpx.Client, kind: str, want: dict[int, int], timeout: float, what: str) -> float:
    name, _key, _tenant, prefix = SOURCES[kind]
    expected = {f"{prefix}PROD-{pid}": qty for pid, qty in want.items()}
    started = time.monotonic()
    got: dict[str, int] = {}
    while time.monotonic() - started < timeout:
        got = products_on_hand(api, prefix)
        if all(got.get(k) == v for k, v in expected.items()):
            return time.monotonic() - started
        time.sleep(0.25)
    letters = api.get("/v1/deadletter", params={"pipeline": "cdc"}).text[:2000]
    raise RuntimeError(
        f"{kind} {what}: the read model does not show the catalogue after {timeout:.0f}s "
        f"(want {expected}, have {got})\nsource: {source_status(api, name)}\ndead letters: {letters}"
    )


def failed_letters(api: httpx.Client) -> list[dict[str, Any]]:
    r = api.get("/v1/deadletter", params={"pipeline": "cdc", "status": "failed", "limit": 100})
    r.raise_for_status()
    return [{k: x.get(k) for k in ("id", "stage", "reason", "event_type")} for x in r.json()["data"]]


def order_count(api: httpx.Client, want: int, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        r = api.get("/v1/metrics/order_count", params={"window": "24h"})
        r.raise_for_status()
        value = int(r.json()["value"])
        if value == want or time.monotonic() > deadline:
            return value
        time.sleep(0.5)


def _quietly(fn: Any) -> None:
    """Teardown step: report a failure and go on with the next step."""
    try:
        fn()
    except Exception as exc:  # noqa: BLE001
        say(f"WARNING: teardown step {getattr(fn, '__qualname__', fn)} failed: {exc!r}")


def _reap(marker: str) -> list[str]:
    """Processes still running whose command line names ``marker`` (this run's temp dir): they were
    started by this run (``agentflow up`` and its engines); terminate them by pid and report them."""
    found: list[tuple[int, str]] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if marker in cmd:
            found.append((int(entry.name), cmd))
    for pid, _ in found:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while found and time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid, _ in found):
        time.sleep(0.2)
    for pid, _ in found:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return [f"{pid} {cmd[:160]}" for pid, cmd in found]


# -- one deployment -----------------------------------------------------------------------------------


def run_deployment(
    deployment: str, dbs: dict[str, Any], work: Path, orders: int, interval_ms: float
) -> list[dict[str, Any]]:
    from agentflow_process import AgentFlowProcess

    for db in dbs.values():
        db.reset()
    writers = {kind: db.writer() for kind, db in dbs.items()}
    for w in writers.values():
        for pid in range(1, PRODUCTS + 1):
            w.add_product(pid, 1000 + 250 * pid, "EUR", "books", STOCK)
    extra = ("--distributed",) if deployment == "distributed" else ()
    data_dir = work / f"agentflow-{deployment}"
    admin = ",".join(key for _, key, _, _ in SOURCES.values())  # each declares its own tenant's source
    # the legacy databases listen on 127.0.0.1: loopback hosts are allowed explicitly
    env = {"AGENTFLOW_ADMIN_API_KEYS": admin, "AGENTFLOW_LEGACY_ALLOW_PRIVATE": "1", **UNTHROTTLED}
    proc = AgentFlowProcess(data_dir, KEYS, extra_args=extra, env=env)
    clients: dict[str, httpx.Client] = {}
    streams: dict[str, OrderStream] = {}
    checkers: dict[str, EntityChecker] = {}
    results: list[dict[str, Any]] = []
    try:
        say(f"{deployment}: starting agentflow up{' --distributed' if extra else ''} (data {data_dir}) ...")
        t0 = time.monotonic()
        try:
            proc.start(timeout=START_TIMEOUT[deployment])
        except RuntimeError as exc:
            raise RuntimeError(f"{deployment}: agentflow up did not come up: {exc}") from exc
        startup_s = round(time.monotonic() - t0, 1)
        say(f"{deployment}: up at {proc.base} after {startup_s}s")
        clients = {k: httpx.Client(base_url=proc.base, headers={"X-API-Key": SOURCES[k][1]}, timeout=60.0)
                   for k in dbs}  # fmt: skip
        for kind, db in dbs.items():
            added = clients[kind].post("/v1/admin/sources", json=declaration(db))
            if added.status_code != 201:
                raise RuntimeError(f"{deployment}: adding source {SOURCES[kind][0]} failed: "
                                   f"{added.status_code} {added.text}")  # fmt: skip
        say(f"{deployment}: sources added; waiting for the snapshot ({PRODUCTS} products per database) ...")
        snapshot_s: dict[str, float] = {}
        for kind in dbs:
            full = dict.fromkeys(range(1, PRODUCTS + 1), STOCK)
            snapshot_s[kind] = round(wait_on_hand(clients[kind], kind, full, SNAPSHOT_TIMEOUT[deployment],
                                                  "snapshot"), 1)  # fmt: skip
            say(f"{deployment}/{kind}: snapshot applied ({snapshot_s[kind]}s after the sources were added)")
        for kind, w in writers.items():  # warm-up: streamed changes that are not orders
            for _ in range(WARMUP_RESTOCKS):
                w.restock(1, 1)
            want = {1: STOCK + WARMUP_RESTOCKS, **{p: STOCK for p in range(2, PRODUCTS + 1)}}
            took = wait_on_hand(clients[kind], kind, want, VISIBLE_TIMEOUT, "warm-up")
            say(f"{deployment}/{kind}: warm-up restocks visible after {took:.1f}s; capture streaming")
        for kind in dbs:
            streams[kind] = OrderStream(proc.base, SOURCES[kind][1])
            streams[kind].start()
            checkers[kind] = EntityChecker(proc.base, SOURCES[kind][1], streams[kind].checks)
            checkers[kind].start()
        for kind, s in streams.items():
            if not s.opened.wait(30) or s.error is not None:
                raise RuntimeError(f"{deployment}/{kind}: the event stream did not open: {s.error}")

        for kind, w in writers.items():
            prefix = SOURCES[kind][3]
            committed: dict[str, float] = {}
            say(f"{deployment}/{kind}: placing {orders} orders, one every {interval_ms:g} ms ...")
            next_at = time.monotonic()
            for i in range(orders):
                oid = i + 1
                w.place_order(oid, 1 + i % CUSTOMERS, 1 + i % PRODUCTS, 1)
                committed[f"{prefix}ORD-{oid}"] = time.time()
                if (i + 1) % 25 == 0:
                    say(f"{deployment}/{kind}: {i + 1}/{orders} committed, "
                        f"{len(committed.keys() & streams[kind].arrivals.keys())} visible")  # fmt: skip
                next_at += interval_ms / 1000
                time.sleep(max(0.0, next_at - time.monotonic()))
            missing = streams[kind].wait_for(set(committed), VISIBLE_TIMEOUT)
            if streams[kind].error is not None:
                raise RuntimeError(f"{deployment}/{kind}: the event stream failed: {streams[kind].error}")
            if missing:
                raise AssertionError(f"{deployment}/{kind}: {len(missing)} of {orders} orders never showed "
                                     f"on the event stream within {VISIBLE_TIMEOUT:.0f}s, e.g. "
                                     f"{sorted(missing)[:5]}; source: "
                                     f"{source_status(clients[kind], SOURCES[kind][0])}")  # fmt: skip
            m = _measure(deployment, kind, committed, streams[kind], interval_ms)
            results.append(m)
            say(f"{deployment}/{kind}: commit -> visible p50 {m['p50_ms']} ms, p95 {m['p95_ms']} ms, "
                f"p99 {m['p99_ms']} ms, max {m['max_ms']} ms (n={m['count']})")  # fmt: skip

        for checker in checkers.values():
            checker.stop()
        for r in results:
            kind = r["database"]
            api = clients[kind]
            r["entity_visible_at_sse"] = checkers[kind].found
            r["entity_missing_at_sse"] = checkers[kind].missing[:10]
            r["order_count"] = order_count(api, orders)
            r["failed_cdc_dead_letters"] = failed_letters(api)
            status = source_status(api, SOURCES[kind][0])
            r["capture"] = {k: status.get(k) for k in (
                "state", "lag_seconds", "records", "applied", "unchanged", "dead_letters", "events",
                "last_error", "capture")}  # fmt: skip
            r["startup_seconds"] = startup_s
            r["snapshot_seconds"] = snapshot_s[kind]
            say(f"{deployment}/{kind}: order_count {r['order_count']}, failed cdc dead letters "
                f"{len(r['failed_cdc_dead_letters'])}, capture state {r['capture']['state']}, "
                f"lag_seconds {r['capture']['lag_seconds']}")  # fmt: skip
        problems = []
        for r in results:
            where = f"{deployment}/{r['database']}"
            if r["order_count"] != orders:
                problems.append(f"{where}: order_count is {r['order_count']}, expected {orders}")
            if r["failed_cdc_dead_letters"]:
                problems.append(f"{where}: failed cdc dead letters {r['failed_cdc_dead_letters']}")
            if r["capture"]["last_error"]:
                problems.append(f"{where}: capture error {r['capture']['last_error']}")
        if problems:
            raise AssertionError("; ".join(problems))
        return results
    finally:
        for s in streams.values():
            _quietly(s.stop)
        for checker in checkers.values():
            _quietly(checker.stop)
        for w in writers.values():
            _quietly(w.close)
        for client in clients.values():
            _quietly(client.close)
        say(f"{deployment}: stopping agentflow up ...")
        _quietly(proc.stop)
        left = _reap(str(data_dir))
        if left:
            say(f"{deployment}: WARNING: terminated processes left behind by agentflow up: {left}")


def _measure(
    deployment: str, kind: str, committed: dict[str, float], stream: OrderStream, interval_ms: float
) -> dict[str, Any]:
    lat, to_store, store_to_visible = [], [], []
    for entity_id, at in committed.items():
        seen, event = stream.arrivals[entity_id]
        lat.append((seen - at) * 1000)
        with contextlib.suppress(KeyError, ValueError, TypeError):
            recorded = _epoch(event["recorded_at"])
            to_store.append((recorded - at) * 1000)
            store_to_visible.append((seen - recorded) * 1000)
    return {
        "deployment": deployment, "database": kind, "source": SOURCES[kind][0], "tenant": SOURCES[kind][2],
        "orders": len(committed), "interval_ms": interval_ms, "count": len(lat),
        "p50_ms": _ms(lat, 50), "p95_ms": _ms(lat, 95), "p99_ms": _ms(lat, 99),
        "max_ms": round(max(lat), 1), "min_ms": round(min(lat), 1),
        "mean_ms": round(sum(lat) / len(lat), 1),
        "commit_to_event_stored_ms": {"p50": _ms(to_store, 50), "p95": _ms(to_store, 95),
                                      "p99": _ms(to_store, 99)},
        "event_stored_to_visible_ms": {"p50": _ms(store_to_visible, 50), "p95": _ms(store_to_visible, 95),
                                       "p99": _ms(store_to_visible, 99)},
    }  # fmt: skip


# -- the run ------------------------------------------------------------------------------------------


def run(deployments: tuple[str, ...], orders: int, interval_ms: float) -> dict[str, Any]:
    use_test_helpers()
    from legacy_databases import start_legacy_mariadb, start_legacy_postgres

    result: dict[str, Any] = {
        "machine": machine_info(),
        "config": {"deployments": list(deployments), "orders": orders, "interval_ms": interval_ms,
                   "products": PRODUCTS, "warmup_restocks": WARMUP_RESTOCKS,
                   "visible": "SSE /v1/stream/events?event_type=OrderPlaced arrival (push; stamped on read)",
                   "commit": "time.time() right after the legacy writer's COMMIT returned"},
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "runs": [],
    }  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="af-bench-legacy-"))
    servers: list[Any] = []
    try:
        say("starting the legacy Postgres and MariaDB ...")
        pg_server, pg = start_legacy_postgres(work / "legacy-pg")
        servers.append(pg_server)
        maria_server, maria = start_legacy_mariadb(work / "legacy-mariadb", die_with_parent=True)
        servers.append(maria_server)
        say(f"legacy Postgres on :{pg.port}, MariaDB on :{maria.port}")
        dbs = {"postgres": pg, "mariadb": maria}
        for deployment in deployments:
            result["runs"].extend(run_deployment(deployment, dbs, work, orders, interval_ms))
    finally:
        for server in reversed(servers):
            try:
                server.stop()
            except Exception as exc:  # noqa: BLE001 - keep stopping the others
                say(f"WARNING: stopping {type(server).__name__} failed: {exc}")
        left = _reap(str(work))
        if left:
            say(f"WARNING: terminated processes left behind: {left}")
        shutil.rmtree(work, ignore_errors=True)
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result["summary"] = {
        f"{r['deployment']}.{r['database']}.{p}_ms": r[f"{p}_ms"]
        for r in result["runs"] for p in ("p50", "p95", "p99", "max")
    }  # fmt: skip
    return result


def render_markdown(result: dict[str, Any], previous: dict[str, Any] | None) -> str:
    m, cfg = result["machine"], result["config"]
    prev = (previous or {}).get("summary", {})
    which = "both" if len(cfg["deployments"]) > 1 else cfg["deployments"][0]
    lines = [
        "# Legacy CDC benchmark",
        "",
        f"{m['date']} · {m['cpu']} · {m['cores']} cores · {m['memory_gib']} GiB · Python {m['python']} · "
        f"`python -m bench.legacy_cdc --deployment {which} --orders {cfg['orders']} "
        f"--interval-ms {cfg['interval_ms']:g}`",
        "",
        "A row committed by a legacy shop application (an `orders` INSERT, one transaction, "
        f"{cfg['orders']} orders one every {cfg['interval_ms']:g} ms) → its `OrderPlaced` is in AgentFlow's "
        "read models. Start: `time.time()` right after the writer's COMMIT returned. End: the event's "
        "arrival on `GET /v1/stream/events` (SSE, sent only after the serving read models applied it), "
        "read by a client thread. Everything on this machine; legacy databases are a Postgres cluster and a "
        "MariaDB server of their own.",
        "",
        "- embedded: Debezium embedded engine inside `agentflow up` → ingestor → event store → "
        "projector → ClickHouse (chdb) → API",
        "- distributed: Debezium on Kafka Connect → Kafka → ingestor (API process) → event store → "
        "Debezium → Kafka → Flink → Kafka → serving loader → ClickHouse → API (`agentflow up --distributed`)",
        "",
        "| deployment | database | n | p50 ms | p95 ms | p99 ms | max ms | commit → stored p50 / p95 | "
        "stored → visible p50 / p95 | entity readable at SSE | order_count | failed dead letters | "
        "capture lag_seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        a, b = r["commit_to_event_stored_ms"], r["event_stored_to_visible_ms"]
        lines.append(
            f"| {r['deployment']} | {r['database']} | {r['count']} | {r['p50_ms']} | {r['p95_ms']} | "
            f"{r['p99_ms']} | {r['max_ms']} | {a['p50']} / {a['p95']} | {b['p50']} / {b['p95']} | "
            f"{r['entity_visible_at_sse']}/{r['count']} | {r['order_count']} | "
            f"{len(r['failed_cdc_dead_letters'])} | {r['capture']['lag_seconds']} |"
        )
    lines += [
        "",
        "`stored` is the event's `recorded_at` in AgentFlow's event store (`clock_timestamp()` of the "
        "insert), so commit → stored is capture + translation, stored → visible is projection + SSE. "
        "`entity readable at SSE`: `GET /v1/entity/order/{id}` answered 200 right after the arrival. "
        "`capture lag_seconds` is the source status' last record commit → applied (`/v1/admin/sources`; "
        "MariaDB binlog timestamps have one-second resolution, so its lag reads up to 1 s high).",
        "",
        f"Load average (1/5/15 min) at start {result['load_average_at_start']}, at end "
        f"{result['load_average_at_end']}.",
    ]
    if prev:
        lines += [
            "",
            f"## Compared with the previous run ({(previous or {}).get('machine', {}).get('date', '?')})",
            "",
            "| figure | latest | previous | change |",
            "|---|---|---|---|",
        ]
        for name, value in result["summary"].items():
            old = prev.get(name)
            change = f"{(value - old) / old * 100:+.0f}%" if value is not None and old else "—"
            lines.append(f"| {name} | {value} | {old if old is not None else '—'} | {change} |")
    lines += ["", "Raw figures: `legacy-cdc-latest.json`. `make bench` runs the embedded deployment, "
              "`make bench-distributed` the distributed one."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--deployment", choices=("embedded", "distributed", "both"), default="both")
    parser.add_argument("--orders", type=int, default=100)
    parser.add_argument("--interval-ms", type=float, default=150.0)
    parser.add_argument("--no-write", action="store_true", help="print only (smoke runs)")
    args = parser.parse_args()
    if args.orders < 1:
        parser.error("--orders must be positive")
    deployments = DEPLOYMENTS if args.deployment == "both" else (args.deployment,)
    result = run(deployments, args.orders, args.interval_ms)
    latest = OUT / "legacy-cdc-latest.json"
    previous = json.loads(latest.read_text()) if latest.exists() else None
    md = render_markdown(result, previous)
    if not args.no_write:
        OUT.mkdir(parents=True, exist_ok=True)
        if previous:
            (OUT / "legacy-cdc-previous.json").write_text(json.dumps(previous, indent=2) + "\n")
        latest.write_text(json.dumps(result, indent=2) + "\n")
        (OUT / "legacy-cdc-latest.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()

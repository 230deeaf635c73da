"""`make bench-distributed`: freshness, per-stage latency and sustained throughput of the distributed
deployment (Postgres -> Debezium/Kafka Connect -> Kafka -> Flink -> Kafka -> serving loader ->
ClickHouse -> API), everything real and on this machine.

1. Freshness: an order command accepted -> a ``min_position`` read of a metric reflects it (the
   protocol of bench/freshness.py, with per-command timestamps kept and the bounded wait's 503
   retried, so a slow pipeline is measured instead of failing the run).
2. Where the time goes, for the same commands: Postgres commit (Debezium ``source_ts_ms``) -> CDC
   record in Kafka -> Flink emitted (``flink_ts_ms``) -> serving record in Kafka -> loader consumed ->
   rows in ClickHouse -> watermark published -> read answered (Kafka record timestamps from a consumer
   of our own; loader stages from GET /v1/health's ``projector`` after each command).
3. Sustained throughput: session events appended straight into the store at fixed offered rates,
   head vs loader watermark sampled every second; the ladder stops at the first rate whose lag grows.
4. The anchor of those rates, in the same run: a Flink job that only deserialises and forwards drains
   the same CDC topic (bench/passthrough_anchor.py); the throughput figures carry their ratio to it.

Writes docs/benchmarks/distributed-latest.json and .md (machine and date); the JSON keeps the previous
run's figures under ``previous`` (its full file moves to distributed-previous.json).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from bench.anchors import DISTRIBUTED_ANCHORED, anchor_ratios, previous_run, ratio_cell
from bench.machine import UNTHROTTLED, machine_info, percentile

OUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks"
KEY = "bench-key"
TENANT = "bench"
PREFIX = "agentflow"

TARGETS = {
    "freshness_p50_ms": ("<=", 700),
    "freshness_p95_ms": ("<=", 1500),
    "sustained_events_per_s": (">=", 2000),
}
REFERENCE = {"freshness_p50_ms": 3020, "freshness_p95_ms": 5700, "sustained_events_per_s": 100}

# (name, start mark, end mark) over the per-command timeline (epoch ms)
STAGES = [
    ("command HTTP (send -> 201)", "sent", "accepted"),
    ("commit -> CDC record in Kafka", "commit", "cdc_kafka"),
    ("CDC in Kafka -> Flink emitted", "cdc_kafka", "flink"),
    ("Flink emitted -> serving record in Kafka", "flink", "serving_kafka"),
    ("serving in Kafka -> loader consumed", "serving_kafka", "consumed"),
    ("loader consumed -> rows in ClickHouse", "consumed", "loaded"),
    ("rows in ClickHouse -> watermark published", "loaded", "visible"),
    ("watermark published -> read answered", "visible", "read"),
    ("commit -> read answered", "commit", "read"),
    ("accepted -> read answered (freshness)", "accepted", "read"),
]


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def health(api: httpx.Client) -> dict[str, dict[str, Any]]:
    r = api.get("/v1/health")
    r.raise_for_status()
    return {c["name"]: c["metrics"] for c in r.json()["components"]}


def _ms(values: list[float], p: float) -> float:
    return round(percentile(values, p), 1)


# -- 1 + 2: freshness and stages --------------------------------------------------------------------


class KafkaTap:
    """A consumer group of our own over the CDC and serving topics: per position, the record
    timestamps (both topics use producer create time) and the serving message's own stage stamps."""

    def __init__(self, bootstrap: str, prefix: str = PREFIX) -> None:
        self.bootstrap = bootstrap
        self.cdc_topic, self.serving_topic = f"{prefix}.events", f"{prefix}.serving"
        self.cdc: dict[int, int] = {}
        self.serving: dict[int, dict[str, int | None]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-kafka-tap", daemon=True)

    def __enter__(self) -> KafkaTap:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        from confluent_kafka import Consumer

        consumer = Consumer({
            "bootstrap.servers": self.bootstrap, "group.id": f"bench-stages-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest", "enable.auto.commit": False, "fetch.wait.max.ms": 10,
        })  # fmt: skip
        consumer.subscribe([self.cdc_topic, self.serving_topic])
        try:
            while not self._stop.is_set():
                for m in consumer.consume(num_messages=500, timeout=0.1):
                    if m.error() is not None or not m.value():
                        continue
                    value = json.loads(m.value() or b"null")
                    if not isinstance(value, dict) or value.get("position") is None:
                        continue
                    position, ts = int(value["position"]), int(m.timestamp()[1])
                    if m.topic() == self.cdc_topic:
                        self.cdc.setdefault(position, ts)
                    else:
                        self.serving.setdefault(position, {
                            "commit": value.get("source_ts_ms"), "flink": value.get("flink_ts_ms"),
                            "serving_kafka": ts,
                        })  # fmt: skip
        finally:
            consumer.close()


def traced_commands(base: str, commands: int, warmup: int) -> list[dict[str, Any]]:
    """measure_freshness's loop (order placed, then order_count read with min_position), keeping for
    each command its wall-clock marks (ms) and the loader's stage figures for the batch that held it."""
    out: list[dict[str, Any]] = []
    with httpx.Client(base_url=base, headers={"X-API-Key": KEY}, timeout=30.0) as api:
        pid = api.post(
            "/v1/products", json={"name": "Fresh", "category": "bench", "price": "1.00", "currency": "USD"}
        ).json()["product_id"]
        api.post(f"/v1/products/{pid}/restock", json={"quantity": 1_000_000}).raise_for_status()
        user = api.post("/v1/users", json={"name": "Bench"}).json()["user_id"]
        line = {"product_id": pid, "quantity": 1, "unit_price": "1.00"}
        for i in range(warmup + commands):
            sent = time.time() * 1000
            r = api.post("/v1/orders", json={"user_id": user, "currency": "USD", "lines": [line]})
            r.raise_for_status()
            accepted = time.time() * 1000
            position = r.json()["position"]
            while True:  # the server waits min_position_timeout_s, then answers 503: ask again
                m = api.get("/v1/metrics/order_count", params={"window": "5m", "min_position": position})
                if m.status_code != 503:
                    break
            m.raise_for_status()
            read = time.time() * 1000
            assert m.json()["meta"]["as_of_position"] >= position
            proj = health(api).get("projector", {})
            if i < warmup:
                continue
            mark: dict[str, Any] = {"position": position, "sent": sent, "accepted": accepted, "read": read}
            f2c, f2l, l2v = (
                proj.get(k) for k in ("flink_to_consumed_ms", "flink_to_loaded_ms", "loaded_to_visible_ms")
            )
            if proj.get("last_position") == position and None not in (f2c, f2l, l2v):
                mark["loader"] = {"f2c": f2c, "f2l": f2l, "l2v": l2v}
            out.append(mark)
            done = len(out)
            if done % 25 == 0:
                fresh = [c["read"] - c["accepted"] for c in out]
                say(
                    f"  {done}/{commands} commands: freshness p50 {_ms(fresh, 50)} ms, "
                    f"p95 {_ms(fresh, 95)} ms"
                )
    return out


def stage_breakdown(marks: list[dict[str, Any]], tap: KafkaTap) -> dict[str, dict[str, float]]:
    for c in marks:
        c["cdc_kafka"] = tap.cdc.get(c["position"])
        c.update(tap.serving.get(c["position"], {}))
        loader = c.pop("loader", None)
        if loader is not None and c.get("flink") is not None:
            c["consumed"] = c["flink"] + loader["f2c"]
            c["loaded"] = c["flink"] + loader["f2l"]
            c["visible"] = c["loaded"] + loader["l2v"]
    out: dict[str, dict[str, float]] = {}
    for name, start, end in STAGES:
        values = [c[end] - c[start] for c in marks if c.get(start) is not None and c.get(end) is not None]
        if values:
            out[name] = {
                "n": len(values),
                "p50_ms": _ms(values, 50),
                "p95_ms": _ms(values, 95),
                "p99_ms": _ms(values, 99),
            }
    return out


# -- 3: sustained throughput --------------------------------------------------------------------------


class OfferedLoad(threading.Thread):
    """Append ``rate`` session events/s (batches of ``batch`` PageViewed on a new stream, one
    transaction each) for ``seconds``; logs (commit wall time, last position) per batch."""

    def __init__(self, store: Any, rate: int, seconds: float, batch: int) -> None:
        super().__init__(name=f"bench-load-{rate}", daemon=True)
        self.store, self.rate, self.seconds, self.batch = store, rate, seconds, batch
        self.log: list[tuple[float, int]] = []
        self.events = 0
        self.elapsed = 0.0
        self.error: str | None = None
        self.stop_now = threading.Event()

    def run(self) -> None:
        from commands.ports import StreamWrite
        from domain.events import SESSION, NewEvent

        interval = self.batch / self.rate
        t0 = time.monotonic()
        n = 0
        try:
            while not self.stop_now.is_set() and n * interval < self.seconds:
                delay = t0 + n * interval - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                sid = f"SES-bench-{uuid.uuid4().hex[:16]}"
                data = {"session_id": sid, "user_id": None, "page_url": "/", "product_id": None}
                events = [NewEvent(SESSION, sid, "PageViewed", data) for _ in range(self.batch)]
                res = self.store.append(TENANT, [StreamWrite(SESSION, sid, 0, events)], {"actor": "bench"})
                self.log.append((time.time(), res.last_position))
                self.events += self.batch
                n += 1
        except Exception as e:  # reported with the rate's figures
            self.error = repr(e)
        self.elapsed = time.monotonic() - t0


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over t."""
    if len(points) < 2:
        return 0.0
    mt = sum(t for t, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    den = sum((t - mt) ** 2 for t, _ in points)
    return sum((t - mt) * (y - my) for t, y in points) / den if den else 0.0


def _lag_seconds(log: list[tuple[float, int]], watermark: int, now: float) -> float:
    """Age of the oldest appended event the watermark has not passed (0 when caught up)."""
    for t, last in log:
        if last > watermark:
            return max(0.0, now - t)
    return 0.0


# -- CPU by process ------------------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _group(pid: int, cmd: str) -> str:
    if pid == os.getpid():
        return "bench (load generator)"
    exe = os.path.basename(cmd.split(" ", 1)[0])
    if exe == "java":
        jvms = {"kafka.Kafka": "kafka broker", "ConnectDistributed": "kafka connect + debezium"}
        return next((g for needle, g in jvms.items() if needle in cmd), "flink jvm (mini-cluster)")
    if "services.cli" in cmd:
        return "api + serving loader"
    if "projections.flink.job" in cmd:
        return "flink client (python)"
    if exe.startswith("python") or "pyflink" in cmd:
        return "flink python worker"
    return "postgres" if exe.startswith("postgres") else exe or "?"


def machine_busy_ticks() -> tuple[int, int]:
    """(busy, total) jiffies over all cores since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values) - idle, sum(values)


def cpu_snapshot(roots: list[int], marker: str) -> dict[int, tuple[str, int]]:
    """pid -> (group, utime+stime ticks) for the processes descending from ``roots`` or from one whose
    command line holds ``marker`` (the run directory: the JVMs detach from their parent)."""
    procs: dict[int, tuple[int, int, str]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        procs[int(d)] = (int(fields[1]), int(fields[11]) + int(fields[12]), cmd)
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    out: dict[int, tuple[str, int]] = {}
    todo = [p for p, (_, _, cmd) in procs.items() if p in roots or marker in cmd]
    while todo:
        pid = todo.pop()
        if pid not in out:
            out[pid] = (_group(pid, procs[pid][2]), procs[pid][1])
            todo.extend(children.get(pid, []))
    return out


def cpu_percent(
    before: dict[int, tuple[str, int]], after: dict[int, tuple[str, int]], seconds: float
) -> dict[str, float]:
    """% of one core per process group over the window (a process new in it counts from 0)."""
    used: dict[str, float] = {}
    for pid, (group, ticks) in after.items():
        used[group] = used.get(group, 0.0) + ticks - before.get(pid, (group, 0))[1]
    return dict(
        sorted(
            ((g, round(t / CLK_TCK / seconds * 100, 1)) for g, t in used.items() if t > 0),
            key=lambda kv: -kv[1],
        )
    )


def run_rate(
    store: Any,
    api: httpx.Client,
    rate: int,
    seconds: float,
    batch: int,
    roots: list[int],
    marker: str,
    drain_timeout: float,
) -> dict[str, Any]:
    load = OfferedLoad(store, rate, seconds, batch)
    start_head = int(health(api)["event_store"]["head_position"])
    cpu0, busy0, t0 = cpu_snapshot(roots, marker), machine_busy_ticks(), time.time()
    load.start()
    samples: list[dict[str, float]] = []
    while load.is_alive():
        time.sleep(max(0.0, t0 + len(samples) + 1 - time.time()))
        h = health(api)
        now = time.time()
        head, wm = int(h["event_store"]["head_position"]), int(h["projector"]["watermark"])
        samples.append(
            {
                "t": round(now - t0, 2),
                "head": head,
                "watermark": wm,
                "lag_positions": head - wm,
                "lag_s": round(_lag_seconds(load.log, wm, now), 2),
            }
        )
        if len(samples) % 5 == 0:
            s = samples[-1]
            say(
                f"  {rate} ev/s offered, t={s['t']:.0f}s: appended {load.events}, head {head}, "
                f"watermark {wm}, lag {head - wm} positions / {s['lag_s']} s"
            )
    load.join()
    cpu = cpu_percent(cpu0, cpu_snapshot(roots, marker), time.time() - t0)
    busy1 = machine_busy_ticks()
    machine_busy = round(100 * (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]), 1)
    others = round(machine_busy * (os.cpu_count() or 1) - sum(cpu.values()), 1)
    proj = health(api)["projector"]
    second_half = [s for s in samples if s["t"] > seconds / 2]
    lag_slope = _slope([(s["t"], s["lag_positions"]) for s in second_half])
    throughput = _slope([(s["t"], s["watermark"]) for s in second_half])
    bounded = load.error is None and lag_slope <= 0.1 * rate  # grows < 10% of the offered rate
    # drain: how long until the watermark passes everything offered, and how fast it goes
    final_head = load.log[-1][1] if load.log else start_head
    t_stop, wm_stop = time.time(), samples[-1]["watermark"] if samples else 0
    wm = int(wm_stop)
    while wm < final_head and time.time() - t_stop < drain_timeout:
        time.sleep(1)
        wm = int(health(api)["projector"]["watermark"])
    drain_s = time.time() - t_stop
    last = samples[-1] if samples else {}
    return {
        "offered_rate": rate,
        "batch": batch,
        "appended_events": load.events,
        "appended_events_per_s": round(load.events / load.elapsed, 1) if load.elapsed else 0.0,
        "throughput_events_per_s": round(throughput, 1),  # watermark slope over the second half
        "lag_positions_max": max((s["lag_positions"] for s in samples), default=0),
        "lag_positions_final": last.get("lag_positions"),
        "lag_seconds_max": max((s["lag_s"] for s in samples), default=0),
        "lag_seconds_final": last.get("lag_s"),
        "lag_slope_positions_per_s": round(lag_slope, 1),
        "bounded": bounded,
        "caught_up_after_s": round(drain_s, 1) if wm >= final_head else None,
        "drain_events_per_s": round((wm - wm_stop) / drain_s, 1) if drain_s > 1 else None,
        "cpu_percent_of_core": cpu,
        "machine_busy_percent": machine_busy,  # all cores, everything running on the machine
        "other_processes_percent_of_core": others,  # not this bench's: contention from elsewhere
        "loader": {
            k: proj.get(k)
            for k in (
                "last_batch_size",
                "last_apply_ms",
                "source_to_visible_p50_ms",
                "source_to_visible_p99_ms",
                "applied",
                "dead_lettered",
            )
        },
        "error": load.error,
        "samples": samples,
    }


# -- run ------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    from bench.tests_on_path import use_test_helpers
    from connectors.database import make_engine
    from connectors.event_store import PostgresEventStore
    from connectors.postgres_cluster import PostgresCluster
    from migrations import run_migrations
    from services.distributed.stack import DistributedStack

    use_test_helpers()
    from agentflow_process import AgentFlowProcess

    raw: dict[str, Any] = {"config": {k: v for k, v in vars(args).items()}}
    with ExitStack() as teardown, tempfile.TemporaryDirectory(prefix="af-bench-dist-") as tmp:
        say("starting Postgres ...")
        cluster = PostgresCluster(Path(tmp) / "pg", settings={"shared_buffers": "128MB"})
        teardown.callback(cluster.stop)
        cluster.start()
        run_migrations(cluster.url)
        stack = DistributedStack(
            Path(tmp) / "stack", cluster.url, topic_prefix=PREFIX, lake=not args.no_lake, say=say
        )
        teardown.callback(stack.stop)
        stack.start()
        say("starting the API (distributed mode) ...")
        extra = ("--distributed", "--external", "--kafka-bootstrap", stack.bootstrap,
                 "--database-url", cluster.url)  # fmt: skip
        proc = AgentFlowProcess(
            Path(tmp) / "api", f"{KEY}:{TENANT}", extra_args=extra, env=UNTHROTTLED
        )
        teardown.callback(proc.stop)
        proc.start()
        pg_pid = int((cluster.pgdata / "postmaster.pid").read_text().split()[0])
        roots = [os.getpid(), pg_pid]

        say(f"freshness + stages over {args.commands} commands ({args.warmup} warm-up) ...")
        with KafkaTap(stack.bootstrap) as tap:
            marks = traced_commands(proc.base, args.commands, args.warmup)
            time.sleep(2)  # let the tap see the last records
        fresh = [c["read"] - c["accepted"] for c in marks]
        http = [c["accepted"] - c["sent"] for c in marks]
        raw["freshness"] = {
            "commands": len(marks),
            "min_position_ms_p50": _ms(fresh, 50), "min_position_ms_p95": _ms(fresh, 95),
            "min_position_ms_p99": _ms(fresh, 99), "command_http_ms_p50": _ms(http, 50),
            "command_http_ms_p95": _ms(http, 95),
        }  # fmt: skip
        raw["stages"] = stage_breakdown(marks, tap)
        for name, s in raw["stages"].items():
            say(f"  {name}: p50 {s['p50_ms']} ms, p95 {s['p95_ms']} ms (n={s['n']})")

        engine = make_engine(cluster.url, pool_size=2, application_name="bench-load")
        teardown.callback(engine.dispose)
        store = PostgresEventStore(engine, notify=False)
        raw["throughput"] = []
        with httpx.Client(base_url=proc.base, headers={"X-API-Key": KEY}, timeout=30.0) as api:
            for rate in args.rates:
                say(f"sustained load: {rate} events/s offered for {args.seconds}s ...")
                r = run_rate(store, api, rate, args.seconds, args.batch, roots, tmp, args.drain_timeout)
                raw["throughput"].append(r)
                say(
                    f"  -> {r['throughput_events_per_s']} ev/s through the pipeline, lag max "
                    f"{r['lag_positions_max']} positions / {r['lag_seconds_max']} s, "
                    f"{'bounded' if r['bounded'] else 'GROWING'}; CPU % of a core: {r['cpu_percent_of_core']}"
                )
                if not r["bounded"]:
                    break
        if not args.no_passthrough:
            from bench.passthrough_anchor import measure_passthrough

            anchor = measure_passthrough(Path(tmp) / "passthrough", stack.bootstrap, PREFIX, say=say)
            raw["passthrough"] = anchor
            say(f"  -> passthrough {anchor['events_per_s']} ev/s over {anchor['records']} records")
        say("tearing down ...")
    return raw


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    f = raw["freshness"]
    s: dict[str, Any] = {
        "freshness_p50_ms": f["min_position_ms_p50"],
        "freshness_p95_ms": f["min_position_ms_p95"],
        "freshness_p99_ms": f["min_position_ms_p99"],
        "command_http_p50_ms": f["command_http_ms_p50"],
    }
    runs = raw.get("throughput", [])
    bounded = [r for r in runs if r["bounded"]]
    s["sustained_events_per_s"] = max((r["appended_events_per_s"] for r in bounded), default=0)
    s["highest_bounded_offered_rate"] = max((r["offered_rate"] for r in bounded), default=0)
    s["max_pipeline_events_per_s"] = max(
        [r["throughput_events_per_s"] for r in runs] + [r["drain_events_per_s"] or 0 for r in runs], default=0
    )
    return s


def summarize_anchors(raw: dict[str, Any]) -> dict[str, float]:
    p = raw.get("passthrough")
    return {"passthrough_events_per_s": p["events_per_s"]} if p and p.get("complete") else {}


def render_markdown(result: dict[str, Any]) -> str:
    m, raw, summary = result["machine"], result["raw"], result["summary"]
    previous = result.get("previous") or {}
    prev = {**previous.get("summary", {}), **previous.get("anchors", {})}
    change = previous.get("new_over_previous", {})
    lines = [
        "# Distributed benchmark",
        "",
        f"{m['date']} · {m['cpu']} · {m['cores']} cores · {m['memory_gib']} GiB · Python {m['python']}",
        "",
        "Postgres → Debezium (Kafka Connect) → Kafka (KRaft) → Flink job (PyFlink mini-cluster"
        f"{', Iceberg sink on' if not raw['config']['no_lake'] else ', no lake'}) → Kafka → serving loader → "
        "ClickHouse (chdb, in the API) → API, all on this machine.",
        "",
        f"Previous run: {previous.get('machine', {}).get('date', '—')}. Figures compare only within a run.",
        "",
        "| figure | value | ratio to its anchor (same run) | previous | new / previous | target "
        "| reference impl. |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, value in {**summary, **result["anchors"]}.items():
        op, target = TARGETS.get(name, ("", None))
        tgt = f"{op} {target}" if target is not None else ""
        ratios = ratio_cell(result["ratios"].get(name, {})) if name in summary else "(anchor)"
        lines.append(f"| {name} | {value} | {ratios} | {prev.get(name, '—')} | {change.get(name, '—')} | "
                     f"{tgt} | {REFERENCE.get(name, '')} |")  # fmt: skip
    lines += [
        "",
        f"## Where the time goes ({raw['freshness']['commands']} order commands, one at a time)",
        "",
        "| stage | p50 ms | p95 ms | p99 ms | n |",
        "|---|---|---|---|---|",
    ]
    for name, st in raw["stages"].items():
        lines.append(f"| {name} | {st['p50_ms']} | {st['p95_ms']} | {st['p99_ms']} | {st['n']} |")
    lines += [
        "",
        "Commit = Debezium's `source_ts_ms`; Kafka stages use record (producer create) timestamps; loader "
        "stages come from `/v1/health` → `projector` after each command; wall clocks of one machine.",
        "CPU is % of one core per process group over the rate's window; machine busy is over all cores, "
        "(others) the % of a core used by processes outside this bench (contention).",
        "",
        f"## Sustained throughput (session events appended straight into the store, "
        f"{raw['config']['seconds']} s per rate)",
        "",
        "| offered ev/s | appended ev/s | through pipeline ev/s | lag max (pos / s) | lag final (pos / s) "
        "| lag slope 2nd half (pos/s) | bounded | drain ev/s | CPU % of a core | machine busy % (others) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in raw["throughput"]:
        cpu = ", ".join(f"{g} {p}" for g, p in r["cpu_percent_of_core"].items() if p >= 5)
        lines.append(
            f"| {r['offered_rate']} | {r['appended_events_per_s']} | {r['throughput_events_per_s']} | "
            f"{r['lag_positions_max']} / {r['lag_seconds_max']} | {r['lag_positions_final']} / "
            f"{r['lag_seconds_final']} | {r['lag_slope_positions_per_s']} | "
            f"{'yes' if r['bounded'] else 'no'} | "
            f"{r['drain_events_per_s'] or '—'} | {cpu} | {r.get('machine_busy_percent', '—')} "
            f"({r.get('other_processes_percent_of_core', '—')}) |"
        )
    p = raw.get("passthrough")
    if p:
        lines += [
            "",
            f"Anchor: a Flink job that only deserialises and forwards (bench/flink_passthrough.py, "
            f"{p['execution_mode']} mode, the projection job's settings) drained the {p['records']} records "
            f"of the CDC topic after the ladder: {p['events_per_s']} ev/s between 10% and 90% of them"
            + ("" if p["complete"] else f" (INCOMPLETE: {p['forwarded']} forwarded)") + ".",
        ]
    lines += ["", "Raw figures: `distributed-latest.json`. Run with `make bench-distributed`."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--commands", type=int, default=150)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument(
        "--rates", type=lambda s: [int(x) for x in s.split(",")], default=[100, 250, 500, 1000, 2000, 3000]
    )
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--batch", type=int, default=50, help="events per appended transaction")
    parser.add_argument("--drain-timeout", type=float, default=120)
    parser.add_argument("--no-lake", action="store_true", help="run Flink without its Iceberg sink")
    parser.add_argument("--no-write", action="store_true", help="print only (smoke runs)")
    parser.add_argument("--no-passthrough", action="store_true", help="skip the Flink passthrough anchor")
    args = parser.parse_args()
    raw = run(args)
    summary, anchors = summarize(raw), summarize_anchors(raw)
    latest = OUT / "distributed-latest.json"
    previous = json.loads(latest.read_text()) if latest.exists() else None
    result = {
        "machine": machine_info(), "raw": raw, "summary": summary, "anchors": anchors,
        "ratios": anchor_ratios(summary, anchors, DISTRIBUTED_ANCHORED),
        "previous": previous_run(previous, summary, anchors),
    }  # fmt: skip
    md = render_markdown(result)
    if not args.no_write:
        OUT.mkdir(parents=True, exist_ok=True)
        if previous:
            (OUT / "distributed-previous.json").write_text(json.dumps(previous, indent=2) + "\n")
        latest.write_text(json.dumps(result, indent=2) + "\n")
        (OUT / "distributed-latest.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()

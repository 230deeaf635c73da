"""`make bench`: append, HTTP command, read and freshness figures for the embedded deployment, with
their anchors measured in the same run (bench/anchors.py): pgbench's insert rate for the events table's
shape on the appends' Postgres cluster (bench/pgbench_anchor.py) and a bare Litestar app on the same
server settings and wrk load (bench/bare_litestar.py).

Writes docs/benchmarks/embedded-latest.json and .md (with machine and date); the JSON keeps the previous
run's figures under ``previous`` (its full file moves to embedded-previous.json).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from bench.anchors import anchor_ratios, previous_run, ratio_cell, summarize_anchors
from bench.machine import UNTHROTTLED, machine_info

OUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks"
KEY = "bench-key"

TARGETS = {
    "append_batch100_events_per_s": (">=", 10_000),
    "append_single_8_writers_events_per_s": (">=", 3_000),
    "http_commands_per_s": (">=", 1_000),
    "reads_per_s": (">=", 1_500),
    "reads_p99_ms": ("<=", 30),
    "freshness_p50_ms": ("<=", 50),
    "freshness_p95_ms": ("<=", 200),
}


def bench_append(seconds: float) -> dict[str, Any]:
    """The appends and, alternating with them on the same cluster, pgbench's rates that bound them."""
    from bench.append import measure_append
    from bench.pgbench_anchor import create_scratch_table, run_pgbench
    from connectors.database import make_engine
    from connectors.event_store import PostgresEventStore
    from connectors.postgres_cluster import PostgresCluster
    from migrations import run_migrations

    with tempfile.TemporaryDirectory(prefix="af-bench-pg-") as tmp:
        cluster = PostgresCluster(Path(tmp) / "pg")
        url = cluster.start()
        try:
            run_migrations(url)
            engine = make_engine(url, pool_size=10)
            store = PostgresEventStore(engine, notify=False)  # as `agentflow up` runs it
            create_scratch_table(cluster)
            pgbench: dict[str, Any] = {}
            results: dict[str, Any] = {"pgbench": pgbench}
            pgbench["single_1_client"] = run_pgbench(cluster, 1, 1, seconds)
            results["single_1_writer"] = measure_append(store, 1, 1, seconds)
            pgbench["single_8_clients"] = run_pgbench(cluster, 8, 1, seconds)
            results["single_8_writers"] = measure_append(store, 8, 1, seconds)
            results["batch100_1_writer"] = measure_append(store, 1, 100, seconds)
            pgbench["batch100_8_clients"] = run_pgbench(cluster, 8, 100, seconds)
            results["batch100_8_writers"] = measure_append(store, 8, 100, seconds)
            engine.dispose()
            return results
        finally:
            cluster.stop()


def bench_http(seconds: int, commands: int) -> dict[str, Any]:
    import httpx

    from bench.freshness import measure_freshness
    from bench.tests_on_path import use_test_helpers
    from bench.wrk_load import reads_script, run_wrk, session_commands_script, wrk_available

    use_test_helpers()
    from agentflow_process import AgentFlowProcess

    results: dict[str, Any] = {}
    if wrk_available():
        from bench.bare_litestar import measure_bare_litestar

        print(f"bare Litestar anchor for {seconds}s ...", flush=True)
        results["bare_litestar"] = measure_bare_litestar(KEY, seconds)
    with tempfile.TemporaryDirectory(prefix="af-bench-up-") as tmp:
        proc = AgentFlowProcess(Path(tmp), f"{KEY}:bench", env=UNTHROTTLED)
        print("starting agentflow up ...", flush=True)
        proc.start()
        try:
            print(f"freshness over {commands} commands ...", flush=True)
            results["freshness"] = measure_freshness(proc.base, KEY, commands)
            if not wrk_available():
                results["http"] = "skipped: wrk not installed (apt-get install wrk)"
                return results
            with httpx.Client(base_url=proc.base, headers={"X-API-Key": KEY}) as api:
                pid = api.post(
                    "/v1/products", json={"name": "R", "category": "bench", "price": "2", "currency": "USD"}
                ).json()["product_id"]
            print(f"HTTP commands for {seconds}s ...", flush=True)
            results["commands"] = run_wrk(proc.base, session_commands_script(KEY), seconds)
            print(f"reads for {seconds}s ...", flush=True)
            paths = [
                "/v1/metrics/revenue?window=1h",
                "/v1/metrics/order_count?window=24h",
                f"/v1/entity/product/{pid}",
                "/v1/metrics/conversion_rate?window=1h",
            ]
            results["reads"] = run_wrk(proc.base, reads_script(KEY, paths), seconds)
        finally:
            proc.stop()
    return results


def summarize(raw: dict[str, Any]) -> dict[str, float]:
    s: dict[str, float] = {}
    app = raw.get("append", {})
    if app:
        s["append_single_1_writer_events_per_s"] = app["single_1_writer"]["events_per_s"]
        s["append_single_8_writers_events_per_s"] = app["single_8_writers"]["events_per_s"]
        s["append_batch100_events_per_s"] = max(
            app["batch100_1_writer"]["events_per_s"], app["batch100_8_writers"]["events_per_s"]
        )
    http = raw.get("http", {})
    if isinstance(http.get("commands"), dict):
        s["http_commands_per_s"] = http["commands"]["per_s"]
        s["http_commands_p50_ms"] = http["commands"]["p50_ms"]
        s["http_commands_p99_ms"] = http["commands"]["p99_ms"]
    if isinstance(http.get("reads"), dict):
        s["reads_per_s"] = http["reads"]["per_s"]
        s["reads_p50_ms"] = http["reads"]["p50_ms"]
        s["reads_p99_ms"] = http["reads"]["p99_ms"]
    if "freshness" in http:
        s["freshness_p50_ms"] = http["freshness"]["min_position_ms_p50"]
        s["freshness_p95_ms"] = http["freshness"]["min_position_ms_p95"]
        s["freshness_p99_ms"] = http["freshness"]["min_position_ms_p99"]
    return s


def render_markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    previous = result.get("previous") or {}
    prev = {**previous.get("summary", {}), **previous.get("anchors", {})}
    change = previous.get("new_over_previous", {})
    prev_date = previous.get("machine", {}).get("date", "—")
    lines = [
        "# Embedded benchmark",
        "",
        f"{m['date']} · {m['cpu']} · {m['cores']} cores · {m['memory_gib']} GiB · Python {m['python']}",
        "",
        f"Previous run: {prev_date}. Figures compare only within a run (shared machine); the ratios to the",
        "anchors of the same run are what carries across runs.",
        "",
        "| figure | value | ratio to its anchors (same run) | previous | new / previous | target |",
        "|---|---|---|---|---|---|",
    ]
    for name, value in result["summary"].items():
        op, target = TARGETS.get(name, ("", None))
        tgt = f"{op} {target}" if target is not None else ""
        ratios = ratio_cell(result["ratios"].get(name, {}))
        before, delta = prev.get(name, "—"), change.get(name, "—")
        lines.append(f"| {name} | {value} | {ratios} | {before} | {delta} | {tgt} |")
    lines += [
        "",
        "## Anchors",
        "",
        "| anchor | value | previous | new / previous |",
        "|---|---|---|---|",
    ]
    for name, value in result["anchors"].items():
        lines.append(f"| {name} | {value} | {prev.get(name, '—')} | {change.get(name, '—')} |")
    lines += [
        "",
        "pgbench: the server's own pgbench against the appends' cluster, inserting into a scratch copy",
        "of `events` (same columns, defaults, constraints and indexes): one new stream per transaction,",
        "1 row or 100 rows in one statement, prepared statements over TCP, alternating with the appends.",
        "Bare Litestar: one route answering a constant JSON, on `agentflow up`'s uvicorn settings, loaded",
        "by the same wrk script shape, connections and duration as the reads. Freshness has no anchor.",
        "",
        "Raw figures: `embedded-latest.json`. Run with `make bench`.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--commands", type=int, default=250)
    parser.add_argument("--skip-append", action="store_true")
    args = parser.parse_args()
    raw: dict[str, Any] = {}
    if not args.skip_append:
        print("append throughput ...", flush=True)
        raw["append"] = bench_append(min(args.seconds, 5))
    raw["http"] = bench_http(args.seconds, args.commands)
    summary, anchors = summarize(raw), summarize_anchors(raw)
    OUT.mkdir(parents=True, exist_ok=True)
    latest = OUT / "embedded-latest.json"
    previous = json.loads(latest.read_text()) if latest.exists() else None
    result = {
        "machine": machine_info(), "raw": raw, "summary": summary, "anchors": anchors,
        "ratios": anchor_ratios(summary, anchors), "previous": previous_run(previous, summary, anchors),
    }  # fmt: skip
    if previous:
        (OUT / "embedded-previous.json").write_text(json.dumps(previous, indent=2) + "\n")
    latest.write_text(json.dumps(result, indent=2) + "\n")
    md = render_markdown(result)
    (OUT / "embedded-latest.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()

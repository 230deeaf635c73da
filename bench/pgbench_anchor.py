"""Anchor of the append and command figures: Postgres' own insert rate for a row of the ``events`` table's
shape, measured by pgbench (shipped with the server's binaries) against the cluster the appends run on.

The rows go to ``bench_events``, a scratch copy of ``events`` (``LIKE events INCLUDING ALL``: the jsonb
columns, the defaults of event id, xid and timestamps, the primary key, the unique (tenant, stream_type,
stream_id, stream_version) and event id constraints and both secondary indexes) with its own position
sequence, so the store itself is untouched. Each transaction writes a new session stream with a random id,
as bench/append.py does: one row (version 1), or one statement of 100 rows (versions 1..100).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import psycopg

from bench.machine import percentile
from connectors.postgres_cluster import DATABASE, SUPERUSER, PostgresCluster

SCRATCH_TABLE = """
DROP TABLE IF EXISTS bench_events;
CREATE TABLE bench_events (LIKE events INCLUDING ALL);
CREATE SEQUENCE IF NOT EXISTS bench_events_position_seq AS bigint OWNED BY bench_events.position;
ALTER TABLE bench_events ALTER COLUMN position SET DEFAULT nextval('bench_events_position_seq');
"""

# one new stream per transaction; its id random like bench/append.py's ("SES-bench-" + 16 hex digits)
_INSERT = """INSERT INTO bench_events (tenant_id, stream_type, stream_id, stream_version, event_type, data, \
metadata) SELECT 'bench', 'session', s.id, v, 'PageViewed', jsonb_build_object('session_id', s.id, \
'user_id', NULL, 'page_url', '/', 'product_id', NULL), '{"actor": "bench"}'::jsonb \
FROM (SELECT 'SES-bench-' || left(md5(gen_random_uuid()::text), 16) AS id) s, generate_series(1, %d) AS v;
"""


def insert_script(rows: int) -> str:
    """The pgbench script: one autocommitted statement inserting ``rows`` events of one new stream."""
    return _INSERT % rows


def create_scratch_table(cluster: PostgresCluster) -> None:
    with psycopg.connect(host="127.0.0.1", port=cluster.port, user=SUPERUSER, dbname=DATABASE,
                         autocommit=True) as conn:  # fmt: skip
        conn.execute(SCRATCH_TABLE)


def _latencies_ms(log_dir: Path) -> list[float]:
    """Per-transaction latencies from pgbench's --log files (third column, microseconds)."""
    out: list[float] = []
    for path in log_dir.glob("pgb*"):
        for line in path.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3:
                out.append(int(fields[2]) / 1000)
    return out


def run_pgbench(cluster: PostgresCluster, clients: int, rows: int, seconds: float) -> dict[str, Any]:
    """``clients`` pgbench connections inserting ``rows`` rows per transaction for ``seconds`` (TCP to
    127.0.0.1, as bench.run's appends connect; prepared statements, as the store's are)."""
    assert cluster.port is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    with tempfile.TemporaryDirectory(prefix="af-pgbench-") as tmp:
        script = Path(tmp) / "insert.sql"
        script.write_text(insert_script(rows))
        logs = Path(tmp) / "log"
        logs.mkdir()
        argv = [
            str(cluster.bin_dir / "pgbench"), "-n", "-h", "127.0.0.1", "-p", str(cluster.port),
            "-U", SUPERUSER, "-c", str(clients), "-j", str(min(clients, os.cpu_count() or 1)),
            "-T", str(max(1, round(seconds))), "-M", "prepared", "-f", str(script),
            "--log", f"--log-prefix={logs / 'pgb'}", DATABASE,
        ]  # fmt: skip
        res = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=seconds + 120)
        if res.returncode != 0:
            raise RuntimeError(f"pgbench failed ({res.returncode}): {res.stderr.strip()}\n{res.stdout}")
        latencies = _latencies_ms(logs)
    return parse_output(res.stdout, clients, rows, latencies)


def parse_output(out: str, clients: int, rows: int, latencies: list[float]) -> dict[str, Any]:
    tps = re.search(r"^tps = ([\d.]+) \(without initial connection time\)", out, re.M)
    done = re.search(r"^number of transactions actually processed: (\d+)", out, re.M)
    failed = re.search(r"^number of failed transactions: (\d+)", out, re.M)
    if tps is None or done is None:
        raise RuntimeError(f"unexpected pgbench output:\n{out}")
    per_s = float(tps.group(1))
    return {
        "clients": clients,
        "rows_per_transaction": rows,
        "transactions": int(done.group(1)),
        "failed": int(failed.group(1)) if failed else 0,
        "transactions_per_s": round(per_s, 1),
        "rows_per_s": round(per_s * rows, 1),
        "latency_ms_p50": round(percentile(latencies, 50), 2),
        "latency_ms_p99": round(percentile(latencies, 99), 2),
    }

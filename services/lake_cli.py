"""``agentflow lake maintain``: compact small files and expire old snapshots of the Iceberg lake (either
deployment), now, under the same lock as the worker fleet's scheduled run (services/lake_job.py).

The catalog is the event store's Postgres: ``--database-url``/``AGENTFLOW_DATABASE_URL``, else the own
cluster of a running ``agentflow up`` in the data dir.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from connectors.lake_maintenance import MaintenanceReport
from services.config import Settings


def add_lake_command(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    p = sub.add_parser("lake", help="Iceberg lake operations")
    lake = p.add_subparsers(dest="lake_command", required=True)
    m = lake.add_parser("maintain", help="compact small files and expire old snapshots now")
    m.add_argument(
        "--database-url", default=None, help="the catalog's Postgres (default: $AGENTFLOW_DATABASE_URL)"
    )
    m.add_argument("--data-dir", type=Path, default=None, help="default: $AGENTFLOW_DATA_DIR or .agentflow")
    m.add_argument("--older-than-s", type=float, default=None, help="expire snapshots older than this")
    m.add_argument("--retain-last", type=int, default=None, help="always keep this many newest snapshots")
    m.add_argument("--target-file-mb", type=int, default=None, help="size of the compacted files")
    m.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


def _database_url(args: argparse.Namespace, settings: Settings) -> str | None:
    url = args.database_url or settings.database_url
    if url:
        return str(url)
    from connectors.postgres_cluster import PostgresCluster

    cluster = PostgresCluster(settings.data_dir / "postgres", bin_dir=settings.pg_bin)
    if not cluster.is_running():
        return None
    cluster.start()  # adopts the running postmaster: learns its port
    return cluster.local_url


def run_lake_command(args: argparse.Namespace, env_settings: Settings) -> int:
    from services.lake_job import policy_from, run_maintenance

    overrides = {
        "data_dir": args.data_dir,
        "lake_snapshot_max_age_s": args.older_than_s,
        "lake_retain_snapshots": args.retain_last,
        "lake_target_file_mb": args.target_file_mb,
    }
    settings = env_settings.with_(**overrides)
    url = _database_url(args, settings)
    if url is None:
        print(
            "error: pass --database-url, set AGENTFLOW_DATABASE_URL or start `agentflow up`", file=sys.stderr
        )
        return 2
    report = run_maintenance(url, policy_from(settings), settings.data_dir)
    if report is None:
        print("error: another lake maintenance run holds the lock; try again later", file=sys.stderr)
        return 1
    print(json.dumps(report.as_dict(), indent=2) if args.json else render(report))
    return 0


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.1f} MB"


def render(report: MaintenanceReport) -> str:
    if not report.tables:
        return "no lake tables"
    lines = [
        f"{'table':<18} {'data files':^13} {'data bytes':^23} {'files on disk':^16} {'bytes on disk':^23} "
        f"{'expired':>7} {'time':>6}"
    ]
    for t in report.tables:
        lines.append(
            f"{t.table:<18} {t.data_files_before:>5} -> {t.data_files_after:<4} "
            f"{_mb(t.data_bytes_before):>10} -> {_mb(t.data_bytes_after):<9} "
            f"{t.disk_files_before or 0:>6} -> {t.disk_files_after or 0:<6} "
            f"{_mb(t.disk_bytes_before):>10} -> {_mb(t.disk_bytes_after):<9} "
            f"{t.expired_snapshots:>7} {t.seconds:>5.1f}s" + (f"  ({t.skipped})" if t.skipped else "")
        )
    lines.append(f"total {report.seconds:.1f}s")
    return "\n".join(lines)

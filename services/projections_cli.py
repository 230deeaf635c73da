"""``agentflow projections rebuild NAME``: rebuild a read model (clickhouse | iceberg | all) from
position 0 inside the running ``agentflow up`` (chdb has one data path per process, so the rebuild
must run there), over HTTP with an API key, printing the progress until it is done.

The API: ``--url`` (default ``$AGENTFLOW_URL`` or ``http://$AGENTFLOW_HOST:$AGENTFLOW_PORT``), the key
``--api-key`` (default ``$AGENTFLOW_API_KEY``, else the first of ``$AGENTFLOW_API_KEYS``, else the
development key under the data dir).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from services.config import client_settings_from_env


def add_projections_command(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    p = sub.add_parser("projections", help="operate the read-model projections of a running agentflow up")
    psub = p.add_subparsers(dest="projections_command", required=True)
    rb = psub.add_parser("rebuild", help="rebuild a read model from position 0 without stopping the API")
    rb.add_argument("name", choices=("clickhouse", "iceberg", "all"))
    rb.add_argument("--url", default=None, help="the API (default: $AGENTFLOW_URL or host:port settings)")
    rb.add_argument("--api-key", default=None, help="default: $AGENTFLOW_API_KEY or the dev key")
    rb.add_argument("--data-dir", type=Path, default=None, help="where the dev key lives")
    rb.add_argument("--no-wait", action="store_true", help="start it and return")
    rb.add_argument("--interval", type=float, default=1.0, help="seconds between progress lines")
    rb.add_argument("--timeout", type=float, default=3600.0)
    return p


def _line(p: dict[str, Any]) -> str:
    return (
        f"{p['name']:<10} {p['state']:<7} {p['phase']:<10} "
        f"position {p['position']:>10}/{p['target_position']:<10}"
        f" {p['percent']:5.1f}%  {p['events']:>10} events  {p['events_per_second']:>9.1f} events/s"
        + (f"  error: {p['error']}" if p.get("error") else "")
    )


def admin_target(args: argparse.Namespace) -> tuple[str, str | None]:
    """The running API's URL and the API key for an admin command (``--url``/``--api-key``)."""
    target = client_settings_from_env(args.url, args.api_key, getattr(args, "data_dir", None))
    url, key = target.url, target.api_key
    if not key:
        print("error: no API key (pass --api-key or set AGENTFLOW_API_KEY)", file=sys.stderr)
    return url, key


def run_admin(
    args: argparse.Namespace, run: Callable[[httpx.Client], int], timeout: float = 30.0
) -> int:
    """Run an admin command's requests with the key of ``admin_target``: 2 without a key, 1 (and a
    message) when the API cannot be reached."""
    url, key = admin_target(args)
    if not key:
        return 2
    try:
        with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=timeout) as client:
            return run(client)
    except httpx.HTTPError as exc:
        print(f"error: cannot reach {url}: {exc}", file=sys.stderr)
        return 1


def run_projections_command(args: argparse.Namespace, out: Any = None) -> int:
    out = out or sys.stdout
    url, key = admin_target(args)
    if not key:
        return 2
    path = f"/v1/admin/projections/{args.name}/rebuild"
    with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=30.0) as client:
        try:
            r = client.post(path)
        except httpx.HTTPError as exc:
            print(f"error: cannot reach {url}: {exc}", file=sys.stderr)
            return 1
        if r.status_code != 202:
            print(f"error: {r.status_code} {r.text}", file=sys.stderr)
            return 1
        for p in r.json()["rebuilds"]:
            print(f"rebuild of {p['name']} started", file=out, flush=True)
        if args.no_wait:
            return 0
        deadline = time.monotonic() + args.timeout
        while True:
            time.sleep(args.interval)
            r = client.get(path)
            if r.status_code != 200:
                print(f"error: {r.status_code} {r.text}", file=sys.stderr)
                return 1
            progress = r.json()["rebuilds"]
            for p in progress:
                print(_line(p), file=out, flush=True)
            if all(p["state"] != "running" for p in progress):
                failed = [p for p in progress if p["state"] == "failed"]
                if failed:
                    return 1
                for p in progress:
                    print(f"{p['name']} rebuilt: {p['events']} events in {p['elapsed_seconds']:.1f}s",
                          file=out, flush=True)  # fmt: skip
                return 0
            if time.monotonic() > deadline:
                print("error: timed out waiting for the rebuild", file=sys.stderr)
                return 1

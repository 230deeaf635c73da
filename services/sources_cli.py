"""``agentflow sources add|list|status|remove``: manage the legacy CDC sources of a running
``agentflow up`` over its admin API (``/v1/admin/sources``).

``add FILE`` validates the YAML declaration here first (clear errors before anything is sent),
resolves ``password_env`` from this shell's environment, and sends it. ``--url``/``--api-key`` as
for ``agentflow projections``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import yaml

from connectors.legacy.declaration import SourceSpecError, load_source
from services.projections_cli import run_admin


def add_sources_command(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    p = sub.add_parser("sources", help="legacy databases captured with Debezium (CDC)")
    ssub = p.add_subparsers(dest="sources_command", required=True)
    add = ssub.add_parser("add", help="declare a source from a YAML file and start capturing it")
    add.add_argument("file", type=Path)
    add.add_argument("--replace", action="store_true", help="replace a source of the same name")
    ssub.add_parser("list", help="declared sources, one line each")
    st = ssub.add_parser("status", help="capture status: state, position, lag, counters, errors")
    st.add_argument("name", nargs="?")
    rm = ssub.add_parser("remove", help="stop capturing a source and forget its offsets")
    rm.add_argument("name")
    for sp in ssub.choices.values():
        sp.add_argument("--url", default=None, help="the API (default: $AGENTFLOW_URL or host:port settings)")
        sp.add_argument("--api-key", default=None, help="default: $AGENTFLOW_API_KEY or the dev key")
        sp.add_argument("--data-dir", type=Path, default=None, help="where the dev key lives")
    return p


def _declaration(path: Path) -> dict[str, Any]:
    load_source(path)  # validates, including password_env
    raw: dict[str, Any] = yaml.safe_load(path.read_text())
    connection = dict(raw.get("connection") or {})
    env_name = connection.pop("password_env", None)
    if env_name:
        connection["password"] = os.environ[env_name]
    return {**raw, "connection": connection}


def _line(s: dict[str, Any]) -> str:
    lag = f"{s['lag_seconds']:.3f}s" if s.get("lag_seconds") is not None else "-"
    line = (f"{s['name']:<16} {s['kind']:<9} {s['state']:<10} records {s['records']:>8}  applied "
            f"{s['applied']:>8}  events {s['events']:>8}  dead letters {s['dead_letters']:>5}  "
            f"lag {lag:>8}  at {s.get('last_position') or '-'}")
    if s.get("last_error"):
        line += f"\n  error: {s['last_error']}"
    return line


def _status(s: dict[str, Any]) -> str:
    keys = ("name", "kind", "tenant", "tenant_column", "connection", "state", "records", "applied",
            "unchanged", "events", "dead_letters", "schema_changes", "last_position", "last_commit_at",
            "last_applied_at", "lag_seconds", "last_event_position", "last_schema_change", "last_error",
            "last_error_at", "tables")
    return "\n".join(f"{k:<20} {s[k]}" for k in keys if s.get(k) is not None)


def run_sources_command(args: argparse.Namespace, out: Any = None) -> int:
    out = out or sys.stdout
    return run_admin(args, lambda client: _run(args, client, out), timeout=120.0)


def _run(args: argparse.Namespace, client: httpx.Client, out: Any) -> int:
    cmd = args.sources_command
    if cmd == "add":
        try:
            body = _declaration(args.file)
        except (OSError, SourceSpecError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        r = client.post("/v1/admin/sources", json=body, params={"replace": "true"} if args.replace else None)
        if r.status_code != 201:
            return _fail(r)
        print(f"source {body['name']} added; capture starts with a snapshot of the existing rows", file=out)
        return 0
    if cmd == "remove":
        r = client.delete(f"/v1/admin/sources/{args.name}")
        if r.status_code != 200:
            return _fail(r)
        print(f"source {args.name} removed (capture stopped, offsets forgotten)", file=out)
        for warning in r.json().get("warnings", []):
            print(f"warning: {warning}", file=sys.stderr)
        return 0
    if cmd == "status" and args.name:
        r = client.get(f"/v1/admin/sources/{args.name}")
        if r.status_code != 200:
            return _fail(r)
        print(_status(r.json()), file=out)
        return 0
    r = client.get("/v1/admin/sources")
    if r.status_code != 200:
        return _fail(r)
    sources = r.json()["sources"]
    if not sources:
        print("no sources declared (agentflow sources add FILE)", file=out)
    for s in sources:
        print(_line(s) if cmd == "status" else f"{s['name']:<16} {s['kind']:<9} {s['state']}", file=out)
    return 0


def _fail(r: httpx.Response) -> int:
    try:
        detail = r.json().get("error", {}).get("message") or r.text
    except ValueError:
        detail = r.text
    print(f"error: {r.status_code} {detail}", file=sys.stderr)
    return 1

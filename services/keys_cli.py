"""``agentflow keys create|list|rotate|revoke``: manage the API keys of a running ``agentflow up`` over its
admin API (``/v1/admin/keys``), with an admin key (``--api-key``, else ``$AGENTFLOW_API_KEY``, else the
server's first operator/admin key, else the development key; ``--url`` as for ``agentflow projections``).

``create`` and ``rotate`` print the new key text once: the server keeps only its hash.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import httpx

from services.projections_cli import run_admin


def add_keys_command(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    p = sub.add_parser("keys", help="API keys: create, list, rotate, revoke")
    ksub = p.add_subparsers(dest="keys_command", required=True)
    create = ksub.add_parser("create", help="a new key; its text is printed once")
    create.add_argument("name", help="what the key is for, e.g. 'dashboard'")
    create.add_argument("--scopes", default="read", help="comma-separated: read,write,admin,operator (read)")
    create.add_argument("--tenant", default=None, help="operator keys: the new key's tenant (default: own)")
    create.add_argument("--expires-in", type=float, default=None, metavar="SECONDS", help="default: never")
    ls = ksub.add_parser("list", help="the stored keys of your tenant (operator: of every tenant)")
    ls.add_argument("--tenant", default=None, help="operator keys: one tenant's")
    rot = ksub.add_parser("rotate", help="a new key in place of KEY_ID; the old one works GRACE more seconds")
    rot.add_argument("key_id")
    rot.add_argument("--grace", type=float, default=None, metavar="SECONDS",
                     help="how long the old key keeps working (default: the server's, 24 h)")  # fmt: skip
    rev = ksub.add_parser("revoke", help="stop a key at once (within a second on every API process)")
    rev.add_argument("key_id")
    for sp in ksub.choices.values():
        sp.add_argument("--url", default=None, help="the API (default: $AGENTFLOW_URL or host:port settings)")
        sp.add_argument("--api-key", default=None, help="an admin key (default: $AGENTFLOW_API_KEY, dev key)")
        sp.add_argument("--data-dir", type=Path, default=None, help="where the dev key lives")
    return p


def run_keys_command(args: argparse.Namespace, out: Any = None) -> int:
    out = out or sys.stdout
    return run_admin(args, lambda client: _run(args, client, out), timeout=30.0)


def _line(k: dict[str, Any]) -> str:
    until = f"  expires {k['expires_at']}" if k.get("expires_at") and k["status"] == "active" else ""
    scopes = ",".join(k["scopes"])
    head = f"{k['id']:<22} {k['tenant_id']:<16} {k['name']:<20} {scopes:<26} {k['status']:<8}"
    return f"{head} {k['prefix']}…{until}"


def _run(args: argparse.Namespace, client: httpx.Client, out: Any) -> int:
    cmd = args.keys_command
    if cmd == "create":
        scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
        body: dict[str, Any] = {"name": args.name, "scopes": scopes}
        if args.tenant:
            body["tenant_id"] = args.tenant
        if args.expires_in is not None:
            body["expires_in_seconds"] = args.expires_in
        r = client.post("/v1/admin/keys", json=body)
        if r.status_code != 201:
            return _fail(r)
        return _issued(r.json(), out)
    if cmd == "rotate":
        r = client.post(f"/v1/admin/keys/{args.key_id}/rotate",
                        json={"grace_seconds": args.grace} if args.grace is not None else None)  # fmt: skip
        if r.status_code != 201:
            return _fail(r)
        done = r.json()
        _issued(done, out)
        previous = done.get("previous") or {}
        print(f"{previous.get('id', args.key_id)} keeps working until {previous.get('expires_at')}", file=out)
        return 0
    if cmd == "revoke":
        r = client.delete(f"/v1/admin/keys/{args.key_id}")
        if r.status_code != 200:
            return _fail(r)
        print(f"{args.key_id} revoked (refused within a second on every API process)", file=out)
        return 0
    r = client.get("/v1/admin/keys", params={"tenant_id": args.tenant} if args.tenant else None)
    if r.status_code != 200:
        return _fail(r)
    keys = r.json()["keys"]
    if not keys:
        print("no stored keys (agentflow keys create NAME)", file=out)
    for k in keys:
        print(_line(k), file=out)
    return 0


def _issued(done: dict[str, Any], out: Any) -> int:
    k = done["key"]
    print(f"key {k['id']} ({k['name']}) of tenant {k['tenant_id']}, scopes {','.join(k['scopes'])}", file=out)
    print(f"X-API-Key: {done['secret']}", file=out)
    print("keep it now: it is not shown again", file=out)
    return 0


def _fail(r: httpx.Response) -> int:
    try:
        detail = r.json().get("error", {}).get("message") or r.text
    except ValueError:
        detail = r.text
    print(f"error: {r.status_code} {detail}", file=sys.stderr)
    return 1

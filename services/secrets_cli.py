"""``agentflow secrets new-key|add-key|rotate``: the keys of the stored secrets (docs/security.md).

``new-key`` prints a new key (for ``AGENTFLOW_SECRET_KEYS``: put it first). ``add-key`` puts a new key
first in the data dir's ``secret-keys`` file (mode 0600); it encrypts from the next start of each
process. ``rotate`` asks the running API (admin route, ``--url``/``--api-key`` as for ``agentflow
projections``) to re-encrypt every stored secret with its newest key, and says whether the older keys
may be removed. No command prints a stored secret or an existing key.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import httpx

from connectors.secret_box import SecretBox, add_key_to_file, key_id
from services.config import settings_from_env
from services.projections_cli import admin_target


def add_secrets_command(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    p = sub.add_parser("secrets", help="keys of the stored secrets: new key, add a key, rotate")
    ssub = p.add_subparsers(dest="secrets_command", required=True)
    ssub.add_parser("new-key", help="print a new key (put it first in AGENTFLOW_SECRET_KEYS)")
    add = ssub.add_parser("add-key", help="put a new key first in the data dir's secret-keys file")
    add.add_argument("--data-dir", type=Path, default=None, help="default: $AGENTFLOW_DATA_DIR or .agentflow")
    rot = ssub.add_parser("rotate", help="re-encrypt every stored secret with the running API's newest key")
    rot.add_argument("--url", default=None, help="the API (default: $AGENTFLOW_URL or host:port settings)")
    rot.add_argument("--api-key", default=None, help="default: $AGENTFLOW_API_KEY or the dev key")
    rot.add_argument("--data-dir", type=Path, default=None, help="where the dev key lives")
    return p


def run_secrets_command(args: argparse.Namespace, out: Any = None) -> int:
    out = out or sys.stdout
    cmd = args.secrets_command
    if cmd == "new-key":
        key = SecretBox.generate_key()
        print(key, file=out)
        print(f"key id {key_id(key)}: put it first in AGENTFLOW_SECRET_KEYS of every process",
              file=sys.stderr)
        return 0
    if cmd == "add-key":
        path = settings_from_env().with_(data_dir=args.data_dir).secret_key_file
        if not path.exists():
            print(f"error: {path} does not exist (the first `agentflow up` creates it)", file=sys.stderr)
            return 2
        kid = add_key_to_file(path)
        print(f"key {kid} added first in {path}; restart every agentflow process (API and workers), "
              "then run `agentflow secrets rotate`", file=out)
        return 0
    url, api_key = admin_target(args)
    if not api_key:
        return 2
    try:
        with httpx.Client(base_url=url, headers={"X-API-Key": api_key}, timeout=300.0) as client:
            r = client.post("/v1/admin/secrets/rotate")
    except httpx.HTTPError as exc:
        print(f"error: cannot reach {url}: {exc}", file=sys.stderr)
        return 1
    return report_rotation(r, out)


def report_rotation(r: httpx.Response, out: Any) -> int:
    """Print the answer of ``POST /v1/admin/secrets/rotate``; 0 when every stored secret could be read."""
    if r.status_code != 200:
        print(f"error: {r.status_code} {r.text}", file=sys.stderr)
        return 1
    done = r.json()
    in_use = ", ".join(f"{k}: {n}" for k, n in sorted(done["keys_in_use"].items())) or "none"
    print(f"re-encrypted {done['rotated']} secret(s) with key {done['newest_key']} "
          f"({done['sealed']} were plaintext); stored secrets per key: {in_use}", file=out)
    if done["unreadable"]:
        print(f"warning: not readable with this API's keys: {', '.join(done['unreadable'])}", file=sys.stderr)
        return 1
    if done["older_keys_removable"]:
        print(f"every stored secret is under key {done['newest_key']}: older keys may be removed", file=out)
    return 0

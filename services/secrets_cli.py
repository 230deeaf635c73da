"""``agentflow secrets new-key|add-key``: the keys of the stored secrets (docs/security.md).

``new-key`` prints a new key (for ``AGENTFLOW_SECRET_KEYS``: put it first). ``add-key`` puts a new key
first in the data dir's ``secret-keys`` file (mode 0600); it encrypts from the next start of each
process. No command prints a stored secret or an existing key.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from connectors.secret_box import SecretBox, add_key_to_file, key_id
from services.config import settings_from_env


def add_secrets_command(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    p = sub.add_parser("secrets", help="keys of the stored secrets: new key, add a key")
    ssub = p.add_subparsers(dest="secrets_command", required=True)
    ssub.add_parser("new-key", help="print a new key (put it first in AGENTFLOW_SECRET_KEYS)")
    add = ssub.add_parser("add-key", help="put a new key first in the data dir's secret-keys file")
    add.add_argument("--data-dir", type=Path, default=None, help="default: $AGENTFLOW_DATA_DIR or .agentflow")
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
        print(f"key {kid} added first in {path}; restart every agentflow process to encrypt with it",
              file=out)
        return 0
    return 1

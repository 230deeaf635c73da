"""The development key of ``agentflow up`` (no AGENTFLOW_API_KEYS): kept under the data dir, an admin and
operator key of tenant ``dev``. Stored keys and the access policy: readmodels/api_keys.py."""

from __future__ import annotations

import secrets
from pathlib import Path

DEV_TENANT = "dev"


def load_or_create_dev_key(data_dir: Path) -> str:
    """With no keys configured, ``agentflow up`` uses one development key kept under the data dir."""
    path = data_dir / "dev-api-key"
    if path.exists():
        key = path.read_text().strip()
        if key:
            return key
    data_dir.mkdir(parents=True, exist_ok=True)
    key = "af_dev_" + secrets.token_urlsafe(18)
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key

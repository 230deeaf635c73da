"""API keys: ``X-API-Key`` maps to exactly one tenant."""

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


class ApiKeys:
    def __init__(self, keys: dict[str, str]) -> None:
        self._keys = dict(keys)

    def tenant_for(self, key: str | None) -> str | None:
        if not key:
            return None
        # constant-time compare against each configured key
        found = None
        for candidate, tenant in self._keys.items():
            if secrets.compare_digest(candidate, key):
                found = tenant
        return found

    def __len__(self) -> int:
        return len(self._keys)

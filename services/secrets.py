"""Which keys encrypt the stored secrets, and bringing the stored secrets in line with them.

``secret_box(settings)``: ``AGENTFLOW_SECRET_KEYS`` when set, else the data dir's key file. Only the
composition root of an API process may create that file (``create=True``: the first ``agentflow up``),
and only while the database holds no encrypted secret -- a new key could open none of them.

``seal_stored_secrets(box, stores)`` runs at every start of an API process: secrets still stored in
plaintext (written before encryption at rest) are encrypted in place, idempotently, and a secret
encrypted with a key this process lacks stops the start with a message naming the key id.
``rotate_stored_secrets`` is ``agentflow secrets rotate``: everything re-encrypted with the newest key.
See docs/security.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from sqlalchemy.engine import Engine

from connectors import webhook_store
from connectors.legacy import registry
from connectors.secret_box import (
    ResealReport,
    SecretBox,
    SecretKeyError,
    create_key_file,
    key_file_too_open,
    read_key_file,
)
from services.config import ConfigError, Settings

log = logging.getLogger("agentflow.secrets")


class SecretColumn(Protocol):
    """A store holding encrypted secrets (connectors.webhook_store, connectors.legacy.registry)."""

    def reseal_secrets(self, rotate: bool = False) -> ResealReport: ...


def secret_box(
    settings: Settings, create: bool = False, census: Callable[[], dict[str, int]] | None = None
) -> SecretBox:
    """The keys of this process. With ``create`` a missing key file is created (mode 0600) with a new key,
    unless ``census()`` (stored secrets per key id) finds secrets already encrypted with some key."""
    if settings.secret_keys:
        return SecretBox(settings.secret_keys)
    path = settings.secret_key_file
    keys = read_key_file(path)
    if not keys and path.exists():
        raise ConfigError(f"{path} holds no key (one Fernet key a line, newest first)")
    if not keys:
        if not create:
            raise ConfigError(
                f"no secret key: set AGENTFLOW_SECRET_KEYS (the keys of the API processes), or point "
                f"AGENTFLOW_DATA_DIR at a data dir with a {path.name} file (not found: {path})"
            )
        found = {kid for kid in (census() if census is not None else {}) if kid != "plaintext"}
        if found:
            raise ConfigError(
                f"the database holds secrets encrypted with key(s) {', '.join(sorted(found))}, but no key is "
                f"configured: set AGENTFLOW_SECRET_KEYS or restore {path}"
            )
        try:
            kid = create_key_file(path)
        except SecretKeyError:
            pass  # another process of this data dir created it a moment ago: use that one
        else:
            log.info("created the secret key file %s (key %s): back it up with the database", path, kid)
        return SecretBox(read_key_file(path))
    if key_file_too_open(path):
        log.warning("%s is readable by group or others: chmod 600 it", path)
    try:
        return SecretBox(keys)
    except SecretKeyError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def stored_secret_census(engine: Engine) -> dict[str, int]:
    """Every stored secret (webhook signing secrets, source passwords) per key id; "plaintext" counts
    those not encrypted yet. Needs no key."""
    out: dict[str, int] = {}
    for part in (webhook_store.secret_key_census(engine), registry.secret_key_census(engine)):
        for kid, n in part.items():
            out[kid] = out.get(kid, 0) + n
    return out


def missing_keys(box: SecretBox, census: dict[str, int]) -> list[str]:
    """Ids of keys stored secrets need that ``box`` does not have."""
    return sorted(k for k in census if k != "plaintext" and k not in box.key_ids)


class StoredSecrets:
    """The stored secrets of a deployment and the keys of this process: the start-up upgrade and the
    rotation (``POST /v1/admin/secrets/rotate``, ``agentflow secrets rotate``)."""

    def __init__(self, box: SecretBox, stores: Sequence[SecretColumn]) -> None:
        self.box = box
        self.stores = list(stores)

    def seal_plaintext(self) -> ResealReport:
        return seal_stored_secrets(self.box, self.stores)

    def rotate(self) -> ResealReport:
        return rotate_stored_secrets(self.box, self.stores)


def seal_stored_secrets(box: SecretBox, stores: Sequence[SecretColumn]) -> ResealReport:
    """Start-up: encrypt plaintext secrets; refuse to start when a secret's key is not configured."""
    report = ResealReport()
    for store in stores:
        report = report + store.reseal_secrets(rotate=False)
    if report.sealed:
        log.info("encrypted %d secret(s) stored in plaintext by an earlier version", report.sealed)
    if report.unreadable:
        unknown = sorted(k for k in report.by_key if k != "plaintext" and k not in box.key_ids)
        more = ", ..." if len(report.unreadable) > 5 else ""
        raise ConfigError(
            f"{len(report.unreadable)} stored secret(s) ({', '.join(report.unreadable[:5])}{more}) are "
            f"encrypted with key(s) {', '.join(unknown)}, which this process does not have "
            f"(its keys: {', '.join(box.key_ids)}): add them to "
            "AGENTFLOW_SECRET_KEYS or the secret-keys file"
        )
    return report


def rotate_stored_secrets(box: SecretBox, stores: Sequence[SecretColumn]) -> ResealReport:
    """Re-encrypt every stored secret with the newest key; afterwards ``by_key`` shows whether any value
    still needs an older key (only one this process cannot read: ``unreadable``)."""
    report = ResealReport()
    for store in stores:
        report = report + store.reseal_secrets(rotate=True)
    log.info(
        "secret rotation: %d re-encrypted with key %s, %d plaintext encrypted, %d unreadable",
        report.rotated, box.newest_key_id, report.sealed, len(report.unreadable),
    )  # fmt: skip
    return report

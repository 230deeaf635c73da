"""Secrets at rest: webhook signing secrets and legacy source passwords are stored encrypted.

A stored secret is ``enc:v1:<key id>:<Fernet token>`` (Fernet: AES-128-CBC + HMAC-SHA256, from the
``cryptography`` package). The key id is a short fingerprint of the key that encrypted it, so a reader
picks the right key at once, names a missing one in its error, and rotation knows which values are not
under the newest key yet. A value without the prefix is plaintext written by a version before this one:
readers accept it (``open(..., allow_plaintext=True)``) and start-up encrypts it in place
(services/secrets.py).

Keys are Fernet keys (32 url-safe base64-encoded bytes), newest first: ``AGENTFLOW_SECRET_KEYS``
(comma-separated) or the key file ``<data dir>/secret-keys`` (one a line, mode 0600), which
``agentflow up`` creates on its first start. The newest key encrypts; every listed key decrypts.

Nothing here logs, and no message carries a key, a token or a plaintext.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

PREFIX = "enc:v1:"
KEY_FILE = "secret-keys"
_KEY_ID_CONTEXT = b"agentflow secret key id\x00"


class SecretKeyError(ValueError):
    """A key is malformed or missing, or a stored secret cannot be decrypted with the configured keys.
    The message names key ids only, never key material, tokens or plaintext."""


def key_id(key: str) -> str:
    """The fingerprint of a key that stored values carry: 8 hex digits of a domain-separated SHA-256."""
    return hashlib.sha256(_KEY_ID_CONTEXT + key.strip().encode()).hexdigest()[:8]


def is_sealed(value: str) -> bool:
    return value.startswith(PREFIX)


def key_id_of(value: str) -> str | None:
    """The id of the key a stored value was encrypted with (None: plaintext)."""
    if not is_sealed(value):
        return None
    kid, sep, _ = value[len(PREFIX) :].partition(":")
    return kid if sep else ""


class SecretBox:
    """Encrypts with the newest key, decrypts with any configured one."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise SecretKeyError("no secret key configured")
        self._fernets: dict[str, Fernet] = {}
        order: list[str] = []
        for i, raw in enumerate(keys):
            key = raw.strip()
            try:
                fernet = Fernet(key.encode())
            except (ValueError, TypeError):
                raise SecretKeyError(
                    f"secret key #{i + 1} is not a Fernet key (32 url-safe base64-encoded bytes; "
                    "`agentflow secrets new-key` prints one)"
                ) from None
            kid = key_id(key)
            if kid in self._fernets:
                continue  # the same key listed twice
            self._fernets[kid] = fernet
            order.append(kid)
        self.key_ids: tuple[str, ...] = tuple(order)
        self.newest_key_id = order[0]
        # stored tokens are decrypted again on every read of an endpoint (each drain, each relay turn):
        # a token always decrypts to the same text, so remember it
        self._open_token = functools.lru_cache(maxsize=4096)(self._decrypt)

    @staticmethod
    def generate_key() -> str:
        return Fernet.generate_key().decode()

    def seal(self, plaintext: str) -> str:
        token = self._fernets[self.newest_key_id].encrypt(plaintext.encode()).decode()
        return f"{PREFIX}{self.newest_key_id}:{token}"

    def open(self, value: str, allow_plaintext: bool = False) -> str:
        """The plaintext of a stored value. A value without the prefix is returned as it is when
        ``allow_plaintext`` (a row written before encryption at rest), refused otherwise."""
        if not is_sealed(value):
            if allow_plaintext:
                return value
            raise SecretKeyError("the value is not an encrypted secret")
        return self._open_token(value)

    def _decrypt(self, value: str) -> str:
        kid, sep, token = value[len(PREFIX) :].partition(":")
        fernet = self._fernets.get(kid) if sep else None
        if fernet is None:
            raise SecretKeyError(
                f"a stored secret is encrypted with key {kid or '?'}, which is not among the configured "
                f"keys ({', '.join(self.key_ids)}): add that key back to AGENTFLOW_SECRET_KEYS or the "
                "secret-keys file"
            )
        try:
            return fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise SecretKeyError(
                f"a stored secret does not decrypt with key {kid}: it was altered, or encrypted with another "
                "key of the same id"
            ) from None

    def needs_reseal(self, value: str, rotate: bool) -> bool:
        """Plaintext always; with ``rotate`` also a value under an older key. A value under a key this
        box does not have cannot be resealed (see ``readable``)."""
        kid = key_id_of(value)
        if kid is None:
            return True
        return rotate and kid != self.newest_key_id and kid in self._fernets

    def readable(self, value: str) -> bool:
        kid = key_id_of(value)
        return kid is None or kid in self._fernets

    def reseal(self, value: str) -> str:
        """``value`` (plaintext or sealed under any configured key) sealed under the newest key."""
        return self.seal(self.open(value, allow_plaintext=True))

    def reseal_all(self, values: Sequence[str], rotate: bool) -> list[str] | None:
        """``values`` with each one that needs it (``needs_reseal``) resealed -- the same list when none
        does -- or None when one of them cannot be opened with these keys (left for the caller to
        report; nothing is half-done)."""
        if not all(self.readable(v) for v in values):
            return None
        try:
            return [self.reseal(v) if self.needs_reseal(v, rotate) else v for v in values]
        except SecretKeyError:  # a known key id, but the token does not decrypt (altered)
            return None


@dataclass
class ResealReport:
    """What a pass over stored secrets found and did (start-up upgrade, ``agentflow secrets rotate``)."""

    sealed: int = 0  # plaintext values now encrypted
    rotated: int = 0  # values re-encrypted under the newest key
    by_key: dict[str, int] = field(default_factory=dict)  # key id -> values under it afterwards
    unreadable: list[str] = field(default_factory=list)  # "what id" of values under an unknown key

    def note_resealed(self, before: Sequence[str], after: Sequence[str]) -> None:
        """The values of a row just rewritten, before and after."""
        for old, new in zip(before, after, strict=True):
            if not is_sealed(old):
                self.sealed += 1
            elif old != new:
                self.rotated += 1

    def count(self, value: str) -> None:
        kid = key_id_of(value) or "plaintext"
        self.by_key[kid] = self.by_key.get(kid, 0) + 1

    def __add__(self, other: ResealReport) -> ResealReport:
        keys = dict(self.by_key)
        for k, n in other.by_key.items():
            keys[k] = keys.get(k, 0) + n
        return ResealReport(
            self.sealed + other.sealed, self.rotated + other.rotated, keys, self.unreadable + other.unreadable
        )


# -- the key file -------------------------------------------------------------------------------------


def read_key_file(path: Path) -> list[str]:
    """The keys of a key file, newest first ([] when there is no file). Blank lines and ``#`` comments
    are skipped."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def key_file_too_open(path: Path) -> bool:
    """True when group or others may read the key file."""
    try:
        return bool(path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO))
    except FileNotFoundError:
        return False


def write_key_file(path: Path, keys: Iterable[str], replace: bool = True) -> None:
    """Write the key file atomically, mode 0600 from its creation; without ``replace`` an existing file
    is left alone (SecretKeyError), also when another process creates it at the same moment."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(f"{k.strip()}\n" for k in keys)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(
                "# AgentFlow secret keys, newest first: the first encrypts, every one decrypts.\n"
                "# Keep this file private and backed up: without it stored secrets are lost.\n" + text
            )
            out.flush()
            os.fsync(out.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise SecretKeyError(f"{path} exists already") from None
            tmp.unlink()
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def create_key_file(path: Path) -> str:
    """A new key file holding one new key (refuses to replace an existing file); returns its key id."""
    key = SecretBox.generate_key()
    write_key_file(path, [key], replace=False)
    return key_id(key)


def add_key_to_file(path: Path) -> str:
    """Put a new key first in the key file (it encrypts from the next start on); returns its id."""
    key = SecretBox.generate_key()
    write_key_file(path, [key, *read_key_file(path)])
    return key_id(key)

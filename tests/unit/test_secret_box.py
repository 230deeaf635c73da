"""connectors/secret_box.py: encryption of stored secrets, key rotation, the key file; and how a process
finds its keys (services/secrets.py, services/config.py)."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest

from connectors.secret_box import (
    PREFIX,
    ResealReport,
    SecretBox,
    SecretKeyError,
    add_key_to_file,
    create_key_file,
    is_sealed,
    key_id,
    key_id_of,
    read_key_file,
)
from services.config import ConfigError, Settings, settings_from_env
from services.secrets import secret_box

OLD, NEW, OTHER = (SecretBox.generate_key() for _ in range(3))
SECRET = "whsec_c2VjcmV0LWJ5dGVzLWZvci10ZXN0aW5n"


def test_round_trip_and_the_ciphertext_never_equals_or_contains_the_plaintext() -> None:
    box = SecretBox([NEW])
    for plaintext in (SECRET, "p", "pässwörd with spaces", ""):
        sealed = box.seal(plaintext)
        assert sealed != plaintext and is_sealed(sealed) and sealed.startswith(PREFIX)
        if len(plaintext) >= 8:  # a short one may occur in any base64 text by chance
            assert plaintext not in sealed
        assert key_id_of(sealed) == key_id(NEW) == box.newest_key_id
        assert box.open(sealed) == plaintext
    assert box.seal(SECRET) != box.seal(SECRET)  # a fresh IV each time: equal secrets do not show


def test_rotation_new_key_first_decrypts_old_values_and_reseals_them_under_the_new_key() -> None:
    old_box = SecretBox([OLD])
    stored = old_box.seal(SECRET)
    rotated_box = SecretBox([NEW, OLD])  # the new key added first
    assert rotated_box.open(stored) == SECRET  # old values still read
    assert rotated_box.needs_reseal(stored, rotate=True)
    assert not rotated_box.needs_reseal(stored, rotate=False)
    resealed = rotated_box.reseal(stored)
    assert key_id_of(resealed) == key_id(NEW) and not rotated_box.needs_reseal(resealed, rotate=True)
    assert SecretBox([NEW]).open(resealed) == SECRET  # the old key may go now
    assert key_id_of(rotated_box.seal("x")) == key_id(NEW)  # the newest key encrypts
    # a row's values at once: only those that need it change; one unreadable value leaves the row alone
    fresh = rotated_box.seal("y")
    assert rotated_box.reseal_all([fresh, SECRET], rotate=False)[0] == fresh
    assert rotated_box.reseal_all([fresh], rotate=True) == [fresh]
    assert rotated_box.reseal_all([stored, SecretBox([OTHER]).seal("z")], rotate=True) is None


def test_wrong_or_missing_key_is_a_clear_error_naming_key_ids_only() -> None:
    stored = SecretBox([OLD]).seal(SECRET)
    box = SecretBox([NEW])
    assert not box.readable(stored)
    with pytest.raises(SecretKeyError, match=f"encrypted with key {key_id(OLD)}.*not among") as err:
        box.open(stored)
    for leaked in (SECRET, OLD, NEW, stored):
        assert leaked not in str(err.value)
    # the same key id but another key (or an altered token): refused, not garbage
    forged = stored[: -6] + ("A" if stored[-6] != "A" else "B") + stored[-5:]
    with pytest.raises(SecretKeyError, match="does not decrypt"):
        SecretBox([OLD]).open(forged)
    with pytest.raises(SecretKeyError, match="not an encrypted secret"):
        box.open(SECRET)
    assert box.open(SECRET, allow_plaintext=True) == SECRET  # a row written before encryption at rest


def test_malformed_keys_are_refused_without_showing_them() -> None:
    with pytest.raises(SecretKeyError, match="#2 is not a Fernet key") as err:
        SecretBox([NEW, "not-a-key"])
    assert "not-a-key" not in str(err.value)
    with pytest.raises(SecretKeyError):
        SecretBox([])
    assert SecretBox([NEW, NEW]).key_ids == (key_id(NEW),)


def test_reseal_report_adds_up() -> None:
    a = ResealReport(sealed=1, by_key={"k1": 2})
    a.count(SecretBox([NEW]).seal("x"))
    b = ResealReport(rotated=2, by_key={"k1": 1}, unreadable=["webhook endpoint ep_1"])
    total = a + b
    assert (total.sealed, total.rotated, total.unreadable) == (1, 2, ["webhook endpoint ep_1"])
    assert total.by_key == {"k1": 3, key_id(NEW): 1}


def test_key_file_is_created_private_and_a_new_key_goes_first(tmp_path: Path) -> None:
    path = tmp_path / "data" / "secret-keys"
    first = create_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(SecretKeyError, match="exists"):
        create_key_file(path)  # never replaced: the stored secrets depend on it
    [only] = read_key_file(path)
    assert key_id(only) == first
    second = add_key_to_file(path)
    keys = read_key_file(path)
    assert [key_id(k) for k in keys] == [second, first] and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not list(path.parent.glob(".*.tmp"))


def test_a_process_takes_the_variable_first_then_the_key_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(data_dir=tmp_path)
    with pytest.raises(ConfigError, match="no secret key"):
        secret_box(settings)  # a worker never creates a key
    with caplog.at_level(logging.INFO, logger="agentflow.secrets"):
        made = secret_box(settings, create=True)  # the first `agentflow up`
    assert (tmp_path / "secret-keys").exists() and secret_box(settings).key_ids == made.key_ids
    [key] = read_key_file(tmp_path / "secret-keys")
    assert key not in caplog.text and made.newest_key_id in caplog.text
    from_env = secret_box(Settings(data_dir=tmp_path, secret_keys=(NEW, OLD)))
    assert from_env.key_ids == (key_id(NEW), key_id(OLD))


def test_no_key_file_is_created_while_the_database_holds_encrypted_secrets(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    with pytest.raises(ConfigError, match=f"encrypted with key\\(s\\) {key_id(OLD)}"):
        secret_box(settings, create=True, census=lambda: {key_id(OLD): 3, "plaintext": 1})
    assert not (tmp_path / "secret-keys").exists()
    # only plaintext rows (an upgrade from before encryption at rest): a key is made to encrypt them
    assert secret_box(settings, create=True, census=lambda: {"plaintext": 2}).key_ids


def test_the_variable_is_validated_and_never_echoed() -> None:
    assert settings_from_env({"AGENTFLOW_SECRET_KEYS": f" {NEW} , {OLD} "}).secret_keys == (NEW, OLD)
    assert settings_from_env({}).secret_keys == ()
    with pytest.raises(ConfigError, match="AGENTFLOW_SECRET_KEYS: secret key #2") as err:
        settings_from_env({"AGENTFLOW_SECRET_KEYS": f"{NEW},hunter2"})
    assert "hunter2" not in str(err.value) and NEW not in str(err.value)
    assert NEW not in repr(settings_from_env({"AGENTFLOW_SECRET_KEYS": NEW}))


def test_cli_prints_a_new_key_and_adds_one_first_to_the_key_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from services.cli import main

    assert main(["secrets", "new-key"]) == 0
    printed = capsys.readouterr()
    key = printed.out.strip()
    assert SecretBox([key]).newest_key_id == key_id(key) and key_id(key) in printed.err
    assert main(["secrets", "add-key", "--data-dir", str(tmp_path)]) == 2  # no key file to add to
    first = create_key_file(tmp_path / "secret-keys")
    assert main(["secrets", "add-key", "--data-dir", str(tmp_path)]) == 0
    keys = read_key_file(tmp_path / "secret-keys")
    assert len(keys) == 2 and key_id(keys[1]) == first and key_id(keys[0]) in capsys.readouterr().out

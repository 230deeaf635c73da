from __future__ import annotations

import re
from pathlib import Path

import pytest

from commands.idempotency import request_hash
from services.api.errors import ApiError
from services.api.routes.commands import parse_if_match
from services.auth import load_or_create_dev_key
from services.config import (
    ENV_VARS,
    ClientSettings,
    ConfigError,
    HttpSettings,
    client_settings_from_env,
    configuration_table,
    parse_api_keys,
    settings_from_env,
)


def test_api_keys_parse_pairs_and_reject_garbage() -> None:
    assert parse_api_keys(" k1:acme , k2:globex,") == {"k1": "acme", "k2": "globex"}
    assert parse_api_keys(None) == {}
    with pytest.raises(ValueError, match="key:tenant"):
        parse_api_keys("k1")
    with pytest.raises(ValueError):
        parse_api_keys("k1:")


def test_admin_and_operator_keys_are_keys_of_agentflow_api_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"AGENTFLOW_API_KEYS": "k1:acme,k2:globex", "AGENTFLOW_ADMIN_API_KEYS": "k1",
           "AGENTFLOW_OPERATOR_API_KEYS": " k2 "}  # fmt: skip
    s = settings_from_env(env)
    assert s.admin_api_keys == {"k1"} and s.operator_api_keys == {"k2"} and s.key_rotation_grace_s == 86400
    # deny by default: no admin key unless named
    assert settings_from_env({"AGENTFLOW_API_KEYS": "k1:acme"}).admin_api_keys == frozenset()
    with pytest.raises(ValueError, match="AGENTFLOW_ADMIN_API_KEYS"):
        settings_from_env({**env, "AGENTFLOW_ADMIN_API_KEYS": "k3"})
    assert settings_from_env({"AGENTFLOW_KEY_ROTATION_GRACE_S": "0"}).key_rotation_grace_s == 0


def test_dev_key_is_created_once_and_kept(tmp_path: Path) -> None:
    first = load_or_create_dev_key(tmp_path)
    assert first.startswith("af_dev_")
    assert load_or_create_dev_key(tmp_path) == first
    assert (tmp_path / "dev-api-key").stat().st_mode & 0o077 == 0


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTFLOW_API_KEYS", "a:t1")
    monkeypatch.setenv("AGENTFLOW_REPORTING_CURRENCY", "EUR")
    s = settings_from_env(port=9001)
    assert s.api_keys == {"a": "t1"} and s.reporting_currency == "EUR" and s.port == 9001
    assert s.resolved_clickhouse_dsn.startswith("chdb://")


@pytest.mark.parametrize(("raw", "expected"), [(None, None), ("", None), ("*", None), ("3", 3), ('"4"', 4),
                                               ('W/"5"', 5)])  # fmt: skip
def test_if_match_accepts_bare_and_quoted_versions(raw: str | None, expected: int | None) -> None:
    assert parse_if_match(raw) == expected


@pytest.mark.parametrize("raw", ["abc", "-1", '"x"'])
def test_if_match_rejects_non_versions(raw: str) -> None:
    with pytest.raises(ApiError) as err:
        parse_if_match(raw)
    assert err.value.status == 422


def test_request_hash_ignores_key_order_but_not_values() -> None:
    a = request_hash("order.place", None, {"a": 1, "b": [1, 2]})
    assert a == request_hash("order.place", None, {"b": [1, 2], "a": 1})
    assert a != request_hash("order.place", None, {"a": 2, "b": [1, 2]})
    assert a != request_hash("order.cancel", None, {"a": 1, "b": [1, 2]})


def test_rate_limits_are_on_by_default_and_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings_from_env({})
    assert (s.rate_limit_read_rpm, s.rate_limit_write_rpm, s.auth_failures_per_minute) == (6000, 3000, 30)
    assert s.rate_limit_redis_url is None
    s = settings_from_env({"AGENTFLOW_RATE_LIMIT_RPM": "120", "AGENTFLOW_RATE_LIMIT_WRITE_RPM": "0"})
    assert (s.rate_limit_read_rpm, s.rate_limit_write_rpm) == (120, 0)  # the older name sets what is unset
    assert settings_from_env({"AGENTFLOW_REDIS_URL": "redis://r:6379/0"}).rate_limit_redis_url == "redis://r:6379/0"
    both = {"AGENTFLOW_REDIS_URL": "redis://r/0", "AGENTFLOW_RATE_LIMIT_REDIS_URL": "redis://limits/1"}
    assert settings_from_env(both).rate_limit_redis_url == "redis://limits/1"
    with pytest.raises(ValueError, match="whole number"):
        settings_from_env({"AGENTFLOW_RATE_LIMIT_READ_RPM": "lots"})
    with pytest.raises(ValueError, match="at least 0"):
        settings_from_env({"AGENTFLOW_AUTH_FAILURES_PER_MINUTE": "-1"})


@pytest.fixture(autouse=True)
def _no_users_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLIs' default config file is under the home directory: not this machine's user's here."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def test_every_variable_the_code_reads_is_documented_and_read_in_one_place() -> None:
    """AGENTFLOW_* names in production code are exactly ENV_VARS; only services/config.py reads the
    environment for them; docs/configuration.md is the generated table."""
    root = Path(__file__).resolve().parents[2]
    named: set[str] = set()
    packages = ("domain", "commands", "projections", "readmodels", "connectors", "services", "migrations")
    for package in packages:
        for path in (root / package).rglob("*.py"):
            text = path.read_text()
            named |= set(re.findall(r"AGENTFLOW_[A-Z0-9_]+", text))
            if path.name != "config.py":
                assert not re.search(r"environ(\.get)?\(?\[?[\"']AGENTFLOW_", text), path
    assert named == set(ENV_VARS)
    assert (root / "docs" / "configuration.md").read_text() == configuration_table()


def test_admin_clis_send_an_operator_or_admin_key_first() -> None:
    env = {"AGENTFLOW_API_KEYS": "k1:a,k2:a,k3:b", "AGENTFLOW_ADMIN_API_KEYS": "k2"}
    assert client_settings_from_env(env=env).api_key == "k2"
    assert client_settings_from_env(env={**env, "AGENTFLOW_OPERATOR_API_KEYS": "k3"}).api_key == "k3"
    assert client_settings_from_env(env={"AGENTFLOW_API_KEYS": "k1:a"}).api_key == "k1"
    assert client_settings_from_env(api_key="mine", env=env).api_key == "mine"
def test_http_settings_from_env() -> None:
    s = settings_from_env({})
    assert s.http == HttpSettings() and s.http.max_body_bytes == 1024 * 1024
    assert s.http.cors_origins == () and not s.http.cors_credentials and not s.http.trust_forwarded_proto
    assert not s.legacy_allow_private and not s.webhooks.allow_private
    s = settings_from_env({
        "AGENTFLOW_MAX_BODY_BYTES": "65536",
        "AGENTFLOW_CORS_ORIGINS": " https://App.Example.com , http://localhost:3000,https://x.example:443",
        "AGENTFLOW_CORS_CREDENTIALS": "1", "AGENTFLOW_TRUST_FORWARDED_PROTO": "1",
        "AGENTFLOW_LEGACY_ALLOW_PRIVATE": "1",
    })  # fmt: skip
    assert s.http.max_body_bytes == 65536 and s.http.cors_credentials and s.http.trust_forwarded_proto
    assert s.http.cors_origins == ("https://app.example.com", "http://localhost:3000", "https://x.example")
    assert s.legacy_allow_private
    assert settings_from_env({"AGENTFLOW_CORS_ORIGINS": "*"}).http.cors_origins == ("*",)


def test_a_wildcard_origin_with_credentials_stops_start_up() -> None:
    env = {"AGENTFLOW_CORS_ORIGINS": "*", "AGENTFLOW_CORS_CREDENTIALS": "1"}
    with pytest.raises(ConfigError, match="AGENTFLOW_CORS_ORIGINS=\\* cannot be combined with "
                                          "AGENTFLOW_CORS_CREDENTIALS=1"):  # fmt: skip
        settings_from_env(env)
    with pytest.raises(ConfigError):
        HttpSettings(cors_origins=("*",), cors_credentials=True)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AGENTFLOW_CORS_ORIGINS": "https://app.example.com/path"}, "not an origin"),
        ({"AGENTFLOW_CORS_ORIGINS": "app.example.com"}, "not an origin"),
        ({"AGENTFLOW_CORS_ORIGINS": "ftp://app.example.com"}, "not an origin"),
        ({"AGENTFLOW_CORS_ORIGINS": "https://u:p@app.example.com"}, "not an origin"),
        ({"AGENTFLOW_CORS_ORIGINS": "https://app.example.com:99999"}, "not an origin"),
        ({"AGENTFLOW_CORS_ORIGINS": "*,https://app.example.com"}, "stands alone"),
        ({"AGENTFLOW_CORS_CREDENTIALS": "1"}, "needs AGENTFLOW_CORS_ORIGINS"),
        ({"AGENTFLOW_MAX_BODY_BYTES": "100"}, "AGENTFLOW_MAX_BODY_BYTES must be at least 1024"),
        ({"AGENTFLOW_MAX_BODY_BYTES": "1MB"}, "AGENTFLOW_MAX_BODY_BYTES must be a whole number"),
    ],
)
def test_bad_http_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings_from_env(env)


def test_clis_read_a_config_file_below_flags_and_environment(tmp_path: Path) -> None:
    config = tmp_path / "agentflow" / "config.toml"
    config.parent.mkdir()
    config.write_text('url = "http://api.example:9000/"\napi_key = "from-file"\n')
    xdg = {"XDG_CONFIG_HOME": str(tmp_path)}  # the default place: $XDG_CONFIG_HOME/agentflow/config.toml
    assert client_settings_from_env(env=xdg) == ClientSettings("http://api.example:9000", "from-file")
    env = {**xdg, "AGENTFLOW_API_KEY": "from-env"}
    assert client_settings_from_env(env=env).api_key == "from-env"
    assert client_settings_from_env(url="http://flag:1", env=env).url == "http://flag:1"
    other = tmp_path / "other.toml"
    other.write_text('api_key = "other"\n')
    assert client_settings_from_env(env={**xdg, "AGENTFLOW_CONFIG": str(other)}).api_key == "other"
    assert client_settings_from_env(env={"XDG_CONFIG_HOME": str(tmp_path / "none")}).url == "http://127.0.0.1:8000"
    with pytest.raises(ValueError, match="not found"):
        client_settings_from_env(env={"AGENTFLOW_CONFIG": str(tmp_path / "missing.toml")})
    other.write_text('api_key = "k"\ntenant = "t"\n')
    with pytest.raises(ValueError, match="only string keys"):
        client_settings_from_env(config_file=other, env={})

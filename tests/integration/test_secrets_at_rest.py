"""Secrets at rest on a real Postgres: webhook signing secrets and legacy source passwords are stored
encrypted, deliveries are still signed with the secret the receiver holds (verified with the
``standardwebhooks`` package), rows written in plaintext by an earlier version are encrypted at
start-up (through the composition root), rotation re-encrypts everything with the newest key, and a
process without the key refuses to start (docs/security.md)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chdb_store import chdb_dsn
from sqlalchemy.engine import Engine
from standardwebhooks import Webhook
from webhook_helpers import append_order
from webhook_receiver import Receiver

from connectors import webhook_signing as signing
from connectors.brokers import postgres_broker
from connectors.event_store import PostgresEventStore
from connectors.legacy.registry import SourceRegistry
from connectors.secret_box import PREFIX, SecretBox, key_id, key_id_of, read_key_file
from connectors.webhook_store import WebhookStore
from services.bootstrap import build
from services.config import ConfigError, Settings, WebhookSettings
from services.secrets import StoredSecrets, stored_secret_census
from services.webhooks.cli import run_worker_command
from services.webhooks.fleet import WebhookFleet

pytestmark = pytest.mark.integration

K1, K2, OTHER = (SecretBox.generate_key() for _ in range(3))
PASSWORD = "legacy-db-pässword-42"
FAST = WebhookSettings(schedule=(0, 0.3, 0.3), allow_private=True, lease_margin_s=2.0, sweep_interval_s=0.5,
                       worker_threads=2)  # fmt: skip


def _declaration(name: str, password: Any = PASSWORD) -> dict[str, Any]:
    return {
        "name": name, "kind": "mariadb", "tenant": "t1",
        "connection": {"host": "127.0.0.1", "port": 3306, "database": "shop", "user": "cdc",
                       "password": password},
        "tables": [{"table": "shop.orders", "translator": "orders"}],
    }  # fmt: skip


def _raw(engine: Engine) -> str:
    """Everything stored in the two tables holding secrets, as text."""
    with engine.connect() as conn:
        hooks = conn.exec_driver_sql("SELECT json_agg(e)::text FROM webhook_endpoints e").scalar()
        sources = conn.exec_driver_sql("SELECT json_agg(s)::text FROM cdc_sources s").scalar()
    return f"{hooks}\n{sources}"


def _stored_values(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        hooks = conn.exec_driver_sql(
            "SELECT s->>'secret' FROM webhook_endpoints, jsonb_array_elements(secrets) s ORDER BY 1"
        ).scalars().all()
        sources = conn.exec_driver_sql(
            "SELECT spec->'connection'->>'password' FROM cdc_sources ORDER BY name"
        ).scalars().all()
    return [str(v) for v in [*hooks, *sources]]


def _write_the_old_way(engine: Engine, endpoint_id: str, url: str, secret: str, source: str) -> None:
    """Rows as the version before encryption at rest wrote them (plaintext in the JSON)."""
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO webhook_endpoints (id, tenant_id, url, secrets) "
            "VALUES (%(id)s, 't1', %(url)s, %(s)s)",
            {"id": endpoint_id, "url": url, "s": json.dumps([{"secret": secret, "expires_at": None}])},
        )
        conn.exec_driver_sql(
            "INSERT INTO cdc_sources (name, kind, spec) VALUES (%(n)s, 'mariadb', %(s)s)",
            {"n": source, "s": json.dumps(_declaration(source))},
        )


def _password(engine: Engine, box: SecretBox) -> str:
    return SourceRegistry(engine, box).get("old_source").spec().connection.password


def _settings(data_dir: Path, **changes: Any) -> Settings:
    return Settings(
        data_dir=data_dir, clickhouse_dsn=chdb_dsn(), iceberg_enabled=False, workers_enabled=False,
        legacy_sources_enabled=False, alerts_enabled=False, **changes,
    )  # fmt: skip


def test_stored_columns_hold_no_plaintext_and_reads_give_it_back(engine: Engine) -> None:
    box = SecretBox([K1])
    hooks, sources = WebhookStore(engine, box), SourceRegistry(engine, box)
    first = signing.generate_secret()
    ep = hooks.create_endpoint("t1", "https://example.com/hook", first)
    second = signing.generate_secret()
    rotated = hooks.rotate_secret("t1", ep.id, second, grace_s=3600)
    assert rotated is not None and rotated.signing_secrets() == [second, first]
    sources.add(_declaration("shop_db"))
    sources.add(_declaration("numeric_pw", password=12345))  # YAML numbers are passwords too

    raw = _raw(engine)
    for secret in (first, second, PASSWORD, first.removeprefix("whsec_"), second.removeprefix("whsec_")):
        assert secret not in raw
    assert '"password": 12345' not in raw
    values = _stored_values(engine)
    assert len(values) == 4 and all(v.startswith(PREFIX) and key_id_of(v) == key_id(K1) for v in values)

    assert hooks.get_endpoint("t1", ep.id).signing_secrets() == [second, first]  # type: ignore[union-attr]
    status = sources.get("shop_db")
    assert status.spec().connection.password == PASSWORD
    assert sources.get("numeric_pw").spec().connection.password == "12345"
    assert PASSWORD not in json.dumps(status.public()) and PASSWORD not in repr(status)
    assert first not in repr(rotated)
    assert stored_secret_census(engine) == {key_id(K1): 4}


def test_a_source_under_a_missing_key_reports_an_error_instead_of_its_password(engine: Engine) -> None:
    SourceRegistry(engine, SecretBox([K1])).add(_declaration("shop_db"))
    status = SourceRegistry(engine, SecretBox([OTHER])).get("shop_db")
    with pytest.raises(ValueError, match=f"encrypted with key {key_id(K1)}"):
        status.spec()
    public = status.public()
    assert key_id(K1) in public["error"] and PASSWORD not in json.dumps(public)


@pytest.fixture()
def broker_ready(engine: Engine, pg_url: str) -> Iterator[None]:
    broker = postgres_broker(pg_url)  # creates the dramatiq schema
    broker.close()
    with engine.begin() as conn:  # messages left by earlier tests name endpoints that are gone
        conn.exec_driver_sql("DELETE FROM dramatiq.queue")
    yield


def _deliver_one(engine: Engine, pg_url: str, box: SecretBox, receiver: Receiver, path: str, n: int) -> Any:
    """Start a fleet with ``box``, append an event, return the ``n``-th request received at ``path``."""
    fleet = WebhookFleet(pg_url, postgres_broker(pg_url), FAST, engine=engine, box=box)
    store = PostgresEventStore(engine, notify=False)
    store.add_commit_listener(fleet.wake)
    fleet.start()
    try:
        append_order(store, "t1")
        return receiver.wait_for(path, n)[n - 1]
    finally:
        fleet.stop()


def test_old_plaintext_rows_are_sealed_at_start_rotated_and_deliveries_stay_signed(
    engine: Engine, pg_url: str, broker_ready: None, tmp_path: Path
) -> None:
    secret = signing.generate_secret()
    with Receiver() as receiver:
        _write_the_old_way(engine, "ep_old", receiver.base + "/old", secret, "old_source")
        assert secret in _raw(engine) and PASSWORD in _raw(engine)
        assert stored_secret_census(engine) == {"plaintext": 2}

        # a worker of the new version reads a row the start-up upgrade has not sealed yet
        rec = _deliver_one(engine, pg_url, SecretBox([K1]), receiver, "/old", 1)
        Webhook(secret).verify(rec.body, rec.headers)

        # the first start of the new version (composition root): its key file is made, the rows sealed
        container = build(_settings(tmp_path / "data"), pg_url)
        container.close()
        [key] = read_key_file(tmp_path / "data" / "secret-keys")
        raw = _raw(engine)
        assert secret not in raw and PASSWORD not in raw
        assert stored_secret_census(engine) == {key_id(key): 2}
        sealed = _stored_values(engine)
        # idempotent: a second start changes nothing
        build(_settings(tmp_path / "data"), pg_url).close()
        assert _stored_values(engine) == sealed
        assert _password(engine, SecretBox([key])) == PASSWORD

        # rotation: a new key first, then every stored secret re-encrypted with it
        both = SecretBox([K2, key])
        stores = [WebhookStore(engine, both), SourceRegistry(engine, both)]
        report = StoredSecrets(both, stores).rotate()
        assert (report.rotated, report.sealed, report.unreadable) == (2, 0, [])
        assert report.by_key == {key_id(K2): 2} == stored_secret_census(engine)
        assert StoredSecrets(both, stores).rotate().rotated == 0  # nothing left to do
        assert secret not in _raw(engine)

        # the old key removed: the workers still sign with the receiver's secret
        rec = _deliver_one(engine, pg_url, SecretBox([K2]), receiver, "/old", 2)
        Webhook(secret).verify(rec.body, rec.headers)
        assert _password(engine, SecretBox([K2])) == PASSWORD


def test_a_process_without_the_key_refuses_to_start(
    engine: Engine, pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hooks = WebhookStore(engine, SecretBox([K1]))
    hooks.create_endpoint("t1", "https://example.com/h", signing.generate_secret())
    # a fresh data dir (no key file) on a database with encrypted secrets: no new key is made
    with pytest.raises(ConfigError, match=f"encrypted with key\\(s\\) {key_id(K1)}"):
        build(_settings(tmp_path / "fresh"), pg_url)
    assert not (tmp_path / "fresh" / "secret-keys").exists()
    # a configured key that is not the one: the start stops, naming the key it needs
    with pytest.raises(ConfigError, match=f"{key_id(K1)}, which this process does not have"):
        build(_settings(tmp_path / "other", secret_keys=(OTHER,)), pg_url)
    # the right key among others: it starts
    build(_settings(tmp_path / "right", secret_keys=(OTHER, K1)), pg_url).close()

    args = argparse.Namespace(
        database_url=pg_url, redis_url=None, threads=None, no_relay=False, data_dir=None
    )
    assert run_worker_command(args, Settings(data_dir=tmp_path / "none")) == 2
    assert "no secret key" in capsys.readouterr().err
    assert run_worker_command(args, Settings(data_dir=tmp_path, secret_keys=(OTHER,))) == 2
    err = capsys.readouterr().err
    assert key_id(K1) in err and "AGENTFLOW_SECRET_KEYS" in err and K1 not in err and OTHER not in err

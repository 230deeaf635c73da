"""A legacy source's database host is an outbound destination (connectors/ssrf.py): refused when declared
and again before a capture starts or a replication slot is dropped, unless the operator allows loopback
and private hosts (``allow_private``, AGENTFLOW_LEGACY_ALLOW_PRIVATE). Real control plane (Postgres
``cdc_sources``); no capture runs (starting one is recorded instead); hostnames resolve through an
injected resolver (no DNS)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from connectors.dead_letters import DeadLetterStore
from connectors.event_store import PostgresEventStore
from connectors.legacy.declaration import SourceSpec, SourceSpecError
from connectors.secret_box import SecretBox
from services.legacy_sources import LegacySources

pytestmark = pytest.mark.integration


def declaration(host: str, name: str = "shop") -> dict[str, Any]:
    return {
        "name": name, "kind": "postgres", "tenant": "t-legacy",
        "connection": {"host": host, "port": 5432, "database": "shop", "user": "u", "password": "p"},
        "tables": [{"table": "public.orders", "translator": "orders"}],
    }  # fmt: skip


class Dns:
    """A resolver whose answers the test changes (a name that moves to a private address later)."""

    def __init__(self, **names: str) -> None:
        self.names = {k.replace("_", "."): v for k, v in names.items()}

    def __call__(self, host: str, port: int) -> Sequence[str]:
        if host not in self.names:
            raise OSError(f"unknown host {host}")
        return [self.names[host]]


def sources(
    engine: Engine, tmp_path: Path, dns: Dns, allow_private: bool = False
) -> tuple[LegacySources, list[str]]:
    store = PostgresEventStore(engine)
    legacy = LegacySources(
        store, DeadLetterStore(engine), tmp_path, SecretBox([SecretBox.generate_key()]), mode="embedded",
        allow_private=allow_private, resolver=dns,
    )
    started: list[str] = []

    def start(spec: SourceSpec) -> Any:  # stands in for the Debezium engine: records what would connect
        started.append(spec.name)
        return type("Capture", (), {"error": None, "running": True, "stop": lambda self: None})()

    legacy._start_capture = start  # type: ignore[method-assign]
    return legacy, started


@pytest.mark.parametrize("host", ["127.0.0.1", "2130706433", "0x7f.1", "::ffff:127.0.0.1", "10.0.0.8",
                                  "169.254.169.254", "db.internal"])  # fmt: skip
def test_a_non_public_host_is_refused_when_declared(engine: Engine, tmp_path: Path, host: str) -> None:
    legacy, started = sources(engine, tmp_path, Dns(db_internal="10.0.0.9"))
    with pytest.raises(SourceSpecError, match="connection.host: .*non-public"):
        legacy.add(declaration(host))
    assert legacy.registry.list() == [] and started == []  # nothing stored, nothing connected


def test_the_opt_in_allows_loopback_and_private_hosts(engine: Engine, tmp_path: Path) -> None:
    legacy, started = sources(engine, tmp_path, Dns(db_internal="10.0.0.9"), allow_private=True)
    legacy.add(declaration("127.0.0.1"))
    legacy.add(declaration("db.internal", name="shop_b"))
    assert [s.name for s in legacy.registry.list()] == ["shop", "shop_b"]
    assert sorted(started) == ["shop", "shop_b"]
    with pytest.raises(SourceSpecError, match="link-local"):  # never: cloud metadata
        legacy.add(declaration("169.254.169.254", name="shop_c"))


def test_a_name_that_moves_to_a_private_address_is_not_captured(engine: Engine, tmp_path: Path) -> None:
    dns = Dns(db_example_com="93.184.216.34")
    legacy, started = sources(engine, tmp_path, dns)
    legacy.add(declaration("db.example.com"))
    assert started == ["shop"]
    legacy._captures.clear()  # the capture stopped (e.g. a restart); meanwhile the name moved
    dns.names["db.example.com"] = "127.0.0.1"
    legacy.reconcile()
    assert started == ["shop"]  # not started again
    status = legacy.registry.get("shop")
    assert status.state == "error" and "non-public" in (status.last_error or "")
    # removing it drops no replication slot on the now-refused host: a warning says so instead
    removed, warnings = legacy.remove("shop")
    assert removed.name == "shop" and len(warnings) == 1 and "non-public" in warnings[0]

"""The legacy-CDC scenario both deployments run (test_legacy_cdc_embedded / _distributed).

A legacy shop on Postgres and one on MariaDB (real servers, tests/legacy_databases.py) hold rows
before AgentFlow sees them; ``agentflow sources add`` declares both against a running ``agentflow up``;
an application-like writer keeps inserting, updating and deleting, with out-of-order update bursts;
``agentflow up`` is restarted while the writers go on. After every phase the read models must say what
the legacy tables say. Then a row no translator can map lands in the dead letters and is replayed with
a correction, and ``sources remove`` releases the Postgres replication slot.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import yaml
from agentflow_process import PROJECT_ROOT, AgentFlowProcess
from legacy_app import LegacyShopWriter
from legacy_databases import LegacyDatabase
from waiting import eventually

KEYS = "pg-key:t-legacy-pg,maria-key:t-legacy-maria"
# each tenant's key declares its own tenant's source (an admin action), and the legacy databases listen
# on 127.0.0.1: a loopback host is refused unless the operator allows it
SERVER_ENV = {"AGENTFLOW_ADMIN_API_KEYS": "pg-key,maria-key", "AGENTFLOW_LEGACY_ALLOW_PRIVATE": "1"}
SOURCES = {"postgres": ("shop_pg", "pg-key", "t-legacy-pg", "PG-"),
           "mariadb": ("shop_maria", "maria-key", "t-legacy-maria", "MA-")}
SYNC_TIMEOUT = 180.0


def declaration(db: LegacyDatabase) -> dict[str, Any]:
    name, _key, tenant, prefix = SOURCES[db.kind]
    return db.declaration(name, tenant, id_prefix=prefix)


def cli(srv: AgentFlowProcess, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "sources", *args, "--url", srv.base, "--api-key", key],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
    )


def read_model(api: httpx.Client) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    orders = api.post("/v1/query", json={
        "sql": "SELECT order_id, status, total_minor, paid_minor, currency FROM orders", "limit": 10_000})
    products = api.post("/v1/query", json={
        "sql": "SELECT product_id, price_minor, on_hand, reserved FROM products", "limit": 10_000})
    assert orders.status_code == 200, orders.text
    assert products.status_code == 200, products.text
    return ({r["order_id"]: r for r in orders.json()["rows"]},
            {r["product_id"]: r for r in products.json()["rows"]})


def differences(db: LegacyDatabase, writer: LegacyShopWriter, api: httpx.Client) -> list[str]:
    """What the read models say that the legacy tables do not (empty when they agree)."""
    prefix = SOURCES[db.kind][3]
    expected = writer.expected()
    orders, products = read_model(api)
    problems: list[str] = []
    paid: dict[int, int] = {}
    for p in expected.payments.values():
        if p["status"] == "completed":
            paid[p["order_id"]] = paid.get(p["order_id"], 0) + p["amount_cents"]
    for oid, row in expected.orders.items():
        got = orders.get(f"{prefix}ORD-{oid}")
        want = (row["status"], row["quantity"] * row["unit_price_cents"], paid.get(oid, 0))
        have = None if got is None else (got["status"], got["total_minor"], got["paid_minor"])
        if have != want:
            problems.append(f"order {oid}: legacy {want}, read model {have}")
    live = {f"{prefix}ORD-{oid}" for oid in expected.orders}
    for order_id, got in orders.items():  # legacy deletes only cancelled orders: ours stay cancelled
        if order_id not in live and got["status"] != "cancelled":
            problems.append(f"{order_id}: deleted in the legacy source but {got['status']} here")
    for pid, row in expected.products.items():
        got = products.get(f"{prefix}PROD-{pid}")
        want_p = (row["price_cents"], expected.stock[pid])
        have_p = None if got is None else (got["price_minor"], got["on_hand"])
        if have_p != want_p:
            problems.append(f"product {pid}: legacy (price, on hand) {want_p}, read model {have_p}")
    return problems


def wait_in_sync(db: LegacyDatabase, writer: LegacyShopWriter, api: httpx.Client, what: str) -> None:
    problems: list[str] = []

    def in_sync() -> bool:
        problems[:] = differences(db, writer, api)
        return not problems

    def diagnosis() -> str:
        letters = api.get("/v1/deadletter", params={"pipeline": "cdc"}).json()
        sources = api.get("/v1/admin/sources").json()
        return (f"{db.kind} {what}: read models differ from the legacy tables: {problems[:10]}\n"
                f"dead letters: {letters}\nsources: {sources}")

    eventually(in_sync, SYNC_TIMEOUT, interval=0.5, what=diagnosis)


def cdc_letters(api: httpx.Client, **filters: str) -> list[dict[str, Any]]:
    """Every cdc dead letter of the client's tenant matching ``filters`` (all pages), newest first."""
    out: list[dict[str, Any]] = []
    params: dict[str, str | int] = {"pipeline": "cdc", **filters, "limit": 500}
    while True:
        got = api.get("/v1/deadletter", params=params)
        assert got.status_code == 200, got.text
        page = got.json()
        out.extend(page["data"])
        if page["next_cursor"] is None:
            return out
        params["cursor"] = page["next_cursor"]


def failed_letters(api: httpx.Client) -> list[dict[str, Any]]:
    """Unresolved cdc dead letters (parked ones that were applied later are ``replayed``)."""
    return [{k: x[k] for k in ("id", "stage", "reason", "event_type")}
            for x in cdc_letters(api, status="failed")]


def assert_only_parked_and_replayed(api: httpx.Client, except_ids: set[int]) -> None:
    """Besides ``except_ids``, the only cdc letters are ``cdc_reference`` ones (a row that named an
    order or product not seen yet, e.g. a payment snapshotted before its order) that were applied
    later (``replayed``)."""
    others = [(x["id"], x["stage"], x["status"], x["reason"])
              for x in cdc_letters(api) if x["id"] not in except_ids]
    assert [x for x in others if x[1:3] != ("cdc_reference", "replayed")] == [], others


def run_legacy_scenario(
    srv: AgentFlowProcess, pg: LegacyDatabase, maria: LegacyDatabase, tmp: Path, start_timeout: float
) -> None:
    dbs = (pg, maria)
    for db in dbs:
        db.reset()
    writers = {db.kind: db.writer() for db in dbs}
    clients = {db.kind: httpx.Client(base_url=srv.base, headers={"X-API-Key": SOURCES[db.kind][1]},
                                     timeout=30.0) for db in dbs}
    try:
        # rows that exist before AgentFlow is pointed at the databases: the snapshot must bring them
        for i, db in enumerate(dbs):
            writers[db.kind].run_app(12, seed=10 + i)
        for db in dbs:
            path = tmp / f"{db.kind}.yaml"
            path.write_text(yaml.safe_dump(declaration(db)))
            added = cli(srv, SOURCES[db.kind][1], "add", str(path))
            assert added.returncode == 0, added.stdout + added.stderr
        for db in dbs:
            wait_in_sync(db, writers[db.kind], clients[db.kind], "snapshot")
        # streaming: inserts, updates, deletes, and bursts of quick updates that skip lifecycle steps
        for i, db in enumerate(dbs):
            writer = writers[db.kind]
            writer.run_app(25, seed=20 + i)
            writer.burst([o for o in writer.orders if writer.orders[o]["status"] != "cancelled"][-8:], seed=i)
        for db in dbs:
            wait_in_sync(db, writers[db.kind], clients[db.kind], "streaming")
        for key, own, other in (("pg-key", "shop_pg", "shop_maria"), ("maria-key", "shop_maria", "shop_pg")):
            status = cli(srv, key, "status")  # an admin key sees its own tenant's sources only
            assert status.returncode == 0, status.stderr
            assert own in status.stdout and other not in status.stdout, status.stdout
            assert "error" not in status.stdout, status.stdout
        assert failed_letters(clients["postgres"]) == []
        assert failed_letters(clients["mariadb"]) == []
        counts = {db.kind: clients[db.kind].get("/v1/metrics/order_count", params={"window": "24h"}).json()
                  for db in dbs}

        # restart: captures stop with agentflow; the apps keep writing; nothing is lost or doubled
        srv.stop()
        for i, db in enumerate(dbs):
            writers[db.kind].run_app(10, seed=30 + i)
        srv.start(timeout=start_timeout)
        for db in dbs:
            wait_in_sync(db, writers[db.kind], clients[db.kind], "after a restart")
        for db in dbs:
            after = clients[db.kind].get("/v1/metrics/order_count", params={"window": "24h"}).json()
            live = sum(1 for o in writers[db.kind].orders.values() if o["status"] != "cancelled")
            assert after["value"] >= counts[db.kind]["value"]
            assert after["value"] == live, (after, live)  # every order placed exactly once
            assert failed_letters(clients[db.kind]) == []

        # a row the anti-corruption layer cannot map: a dead letter with the canonical record; replayed
        # with a corrected row image it reaches the read model
        writer = writers["postgres"]
        pid = next(iter(writer.products))
        oid = writer.next_id("orders")
        writer.restock(pid, 5)
        writer.place_order(oid, 1, pid, 1)
        cur = writer.conn.cursor()
        cur.execute("UPDATE orders SET status = 'on_hold' WHERE id = %s", (oid,))
        writer.conn.commit()
        api = clients["postgres"]
        letters = eventually(lambda: cdc_letters(api, stage="cdc_translate", status="failed"), SYNC_TIMEOUT,
                             what="a failed cdc_translate dead letter for the on_hold order")
        assert len(letters) == 1, letters
        letter = letters[0]
        assert (letter["stage"], letter["status"]) == ("cdc_translate", "failed"), letter
        assert "'on_hold' has no mapping" in letter["reason"], letter
        assert [x["id"] for x in failed_letters(api)] == [letter["id"]]  # the only unresolved one
        assert_only_parked_and_replayed(api, {letter["id"]})
        canonical = letter["record"]["canonical"]
        assert canonical["source"]["table"] == "orders" and canonical["entity_id"] == str(oid)
        corrected = {**canonical["after"], "status": "confirmed"}
        replay = api.post(f"/v1/deadletter/{letter['id']}/replay", json={"data": corrected})
        assert replay.status_code == 200, replay.text
        assert replay.json()["status"] == "replayed"
        cur.execute("UPDATE orders SET status = 'confirmed' WHERE id = %s", (oid,))  # the app fixes it too
        writer.conn.commit()
        writer.orders[oid]["status"] = "confirmed"
        wait_in_sync(pg, writer, api, "after the replay")
        assert failed_letters(api) == []
        assert_only_parked_and_replayed(api, {letter["id"]})
        (replayed,) = [x for x in cdc_letters(api, stage="cdc_translate") if x["id"] == letter["id"]]
        assert replayed["status"] == "replayed", replayed

        # remove: capture stops and the legacy database's replication slot is released
        removed = cli(srv, "pg-key", "remove", "shop_pg")
        assert removed.returncode == 0, removed.stdout + removed.stderr
        conn = pg.admin_connect()
        try:
            slots = conn.execute(
                "SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'agentflow%%'"
            ).fetchall()
        finally:
            conn.close()
        assert slots == [], slots
        listed = cli(srv, "pg-key", "list")
        assert "shop_pg" not in listed.stdout, listed.stdout
        listed = cli(srv, "maria-key", "list")
        assert "shop_maria" in listed.stdout, listed.stdout
    finally:
        for w in writers.values():
            w.close()
        for c in clients.values():
            c.close()

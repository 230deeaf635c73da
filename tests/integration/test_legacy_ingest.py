"""The anti-corruption layer on a real event store: Debezium envelopes (Postgres and MariaDB shapes)
-> canonical records -> commands -> events, with re-delivery, skipped states, stale records, dead
letters and their replay. Capture itself is exercised in test_legacy_capture*.py and the e2e tests."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import pytest
from secret_keys import TEST_BOX
from sqlalchemy.engine import Engine

from commands.cache import AggregateCache
from connectors.dead_letters import REPLAYED, DeadLetterStore
from connectors.event_store import PostgresEventStore
from connectors.legacy.canonical import NAMESPACE, UnknownSource, normalize
from connectors.legacy.declaration import parse_source
from connectors.legacy.ingest import LegacyIngestor, StoreState
from connectors.legacy.registry import SourceRegistry

pytestmark = pytest.mark.integration

TENANT = "t-legacy"
_lsn = itertools.count(1_000_000, 64)


def _spec(kind: str = "postgres") -> Any:
    schema = "public" if kind == "postgres" else "shop"
    return parse_source({
        "name": "shop", "kind": kind, "tenant": TENANT, "id_prefix": "S-",
        "connection": {"host": "127.0.0.1", "port": 5432, "database": "shop", "user": "u", "password": "p"},
        "tables": [{"table": f"{schema}.{t}", "translator": t}
                   for t in ("orders", "payments", "products", "inventory")],
    })


class Envelopes:
    """Debezium change values as the JSON converter (schemas off) writes them."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.pos = 4

    def __call__(self, op: str, table: str, before: dict[str, Any] | None, after: dict[str, Any] | None,
                 snapshot: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
        row = after if after is not None else before
        assert row is not None
        key = {"id": row["id"]} if "id" in row else {"product_id": row["product_id"]}
        if self.kind == "postgres":
            source = {"connector": "postgresql", "name": "legacy.shop", "db": "shop", "schema": "public",
                      "table": table, "lsn": next(_lsn), "txId": 700, "ts_ms": 1_764_000_000_000,
                      "snapshot": "true" if snapshot else "false"}
        else:
            self.pos += 250
            source = {"connector": "mariadb", "name": "legacy.shop", "db": "shop", "table": table,
                      "file": "binlog.000002", "pos": self.pos, "row": 0, "server_id": 1,
                      "ts_ms": 1_764_000_000_000, "snapshot": "true" if snapshot else "false"}
        return key, {"before": before, "after": after, "source": source, "op": op, "ts_ms": 1_764_000_000_100}


def _product(pid: int, price: int = 1250) -> dict[str, Any]:
    return {"id": pid, "sku": f"SKU{pid}", "name": f"Thing {pid}", "category": "tools", "price_cents": price,
            "currency": "EUR"}


def _order(oid: int, status: str, pid: int = 1, qty: int = 2, price: int = 1250) -> dict[str, Any]:
    return {"id": oid, "customer_id": 7, "product_id": pid, "quantity": qty, "unit_price_cents": price,
            "currency": "EUR", "channel": "web", "status": status}


def _payment(pay: int, oid: int, status: str, amount: int = 2500) -> dict[str, Any]:
    return {"id": pay, "order_id": oid, "amount_cents": amount, "currency": "EUR", "method": "card",
            "status": status}


@pytest.fixture()
def parts(engine: Engine) -> tuple[LegacyIngestor, PostgresEventStore, DeadLetterStore, SourceRegistry]:
    store = PostgresEventStore(engine)
    letters = DeadLetterStore(engine)
    registry = SourceRegistry(engine, TEST_BOX)
    return LegacyIngestor(store, letters, AggregateCache(), registry), store, letters, registry


def _events(store: PostgresEventStore) -> list[tuple[str, str]]:
    return [(e.event_type, e.stream_id) for e in store.read_all(0, 10_000) if e.tenant_id == TENANT]


@pytest.mark.parametrize("kind", ["postgres", "mariadb"])
def test_legacy_rows_become_domain_events_once(parts: Any, kind: str) -> None:
    ingestor, store, letters, registry = parts
    spec = _spec(kind)
    registry.add({**spec.public(), "connection": {**spec.connection.redacted(), "password": "p"}})
    env = Envelopes(kind)
    batch = [
        env("r", "products", None, _product(1), snapshot=True),
        env("r", "inventory", None, {"product_id": 1, "quantity": 10}, snapshot=True),
        env("c", "orders", None, _order(100, "pending")),
        env("c", "payments", None, _payment(500, 100, "pending")),
        env("u", "payments", _payment(500, 100, "pending"), _payment(500, 100, "completed")),
        # a status jump: confirmed and shipped are both filled in
        env("u", "orders", _order(100, "pending"), _order(100, "shipped")),
        env("u", "inventory", {"product_id": 1, "quantity": 10}, {"product_id": 1, "quantity": 15}),
        env("u", "products", _product(1), _product(1, price=1300)),
    ]
    tally = ingestor.ingest(spec, batch)
    assert tally.dead_letters == 0, letters.list(None)
    assert tally.records == 8 and tally.applied == 8
    types = [t for t, _ in _events(store)]
    assert types == [
        "ProductRegistered", "StockReceived", "UserRegistered", "OrderPlaced", "StockReserved",
        "PaymentInitiated", "PaymentCompleted", "OrderPaymentCaptured", "OrderConfirmed", "StockShipped",
        "OrderShipped", "StockReceived", "ProductPriceChanged",
    ]
    state = StoreState(store, TENANT)
    assert state.order("S-ORD-100").status == "shipped"
    assert state.product("S-PROD-1").on_hand == 15 and state.product("S-PROD-1").price_minor == 1300
    before = _events(store)
    ids_before = {e.event_id for e in store.read_all(0, 10_000)}
    # re-delivery of the whole batch (a connector restart before its offsets were flushed)
    again = ingestor.ingest(spec, batch)
    assert again.applied == 0 and again.dead_letters == 0
    assert _events(store) == before
    assert {e.event_id for e in store.read_all(0, 10_000)} == ids_before
    status = registry.get("shop")
    assert status.records == 16 and status.applied == 8 and status.state == "streaming"
    assert status.last_position is not None


def test_event_ids_derive_from_the_source_position(parts: Any) -> None:
    """The stored event's id is a function of the change's source position (uuid5 of the record id and
    the step), so the same change captured again (another store, a re-snapshot) gets the same id."""
    ingestor, store, _letters, _registry = parts
    spec = _spec()
    key, value = Envelopes("postgres")("r", "products", None, _product(3), snapshot=True)
    ingestor.ingest(spec, [(key, value)])
    (stored,) = store.read_all(0, 100)
    record = normalize(spec, value, key)
    assert record is not None
    seed = uuid.uuid5(NAMESPACE, f"{record.record_id}|product.register:")
    assert str(stored.event_id) == str(uuid.uuid5(seed, "0"))
    assert stored.metadata["cdc"]["record_id"] == record.record_id


def test_stale_and_untranslatable_changes_go_where_they_should(parts: Any) -> None:
    ingestor, store, letters, _registry = parts
    spec = _spec()
    env = Envelopes("postgres")
    ingestor.ingest(spec, [env("r", "products", None, _product(1), snapshot=True),
                           env("r", "inventory", None, {"product_id": 1, "quantity": 50}, snapshot=True)])
    placed = env("c", "orders", None, _order(101, "pending"))
    cancelled = env("u", "orders", _order(101, "pending"), _order(101, "cancelled"))
    ingestor.ingest(spec, [placed, cancelled])
    # the insert delivered again after the cancel: stale, must not resurrect or fail
    late = ingestor.ingest(spec, [placed])
    assert late.unchanged == 1 and late.dead_letters == 0
    assert StoreState(store, TENANT).order("S-ORD-101").status == "cancelled"
    # a regression and an unmapped status: dead letters with reasons; a stock decrease: an adjustment
    bad = ingestor.ingest(spec, [
        env("u", "orders", _order(101, "cancelled"), _order(101, "shipped")),
        env("c", "orders", None, _order(102, "on_hold")),
        env("u", "inventory", {"product_id": 1, "quantity": 50}, {"product_id": 1, "quantity": 40}),
    ])
    assert bad.dead_letters == 2
    reasons = sorted((x.stage, x.reason) for x in letters.list(None))
    assert [s for s, _ in reasons] == ["cdc_translate"] * 2
    assert any("cannot go from cancelled to shipped" in r for _, r in reasons)
    assert any("'on_hold' has no mapping" in r for _, r in reasons)
    assert StoreState(store, TENANT).product("S-PROD-1").on_hand == 40
    stream = store.load_stream(TENANT, "product", "S-PROD-1")
    (adjusted,) = [e for e in stream if e.event_type == "StockAdjusted"]
    assert adjusted.data == {"product_id": "S-PROD-1", "delta": -10, "reason": "legacy_sync"}


def test_missing_references_wait_and_are_retried(parts: Any) -> None:
    ingestor, store, letters, _registry = parts
    spec = _spec("mariadb")
    env = Envelopes("mariadb")
    # the payment arrives in an earlier batch than its order (e.g. the app wrote it first)
    first = ingestor.ingest(spec, [env("c", "payments", None, _payment(900, 300, "pending", amount=1250))])
    assert first.dead_letters == 1
    (parked,) = letters.list(None)
    assert parked.stage == "cdc_reference" and "S-ORD-300" in parked.reason
    ingestor.ingest(spec, [env("r", "products", None, _product(2), snapshot=True),
                           env("r", "inventory", None, {"product_id": 2, "quantity": 5}, snapshot=True),
                           env("c", "orders", None, _order(300, "pending", pid=2, qty=1))])
    (retried,) = letters.list(None)
    assert retried.status == REPLAYED
    assert StoreState(store, TENANT).payment("S-PAY-900").exists


def test_tenants_are_explicit(parts: Any, engine: Engine) -> None:
    ingestor, store, letters, _registry = parts
    spec = parse_source({
        "name": "multi", "kind": "postgres", "tenant_column": "shop_code", "tenants": {"north": "t-north"},
        "connection": {"host": "h", "port": 1, "database": "shop", "user": "u"},
        "tables": [{"table": "public.products", "translator": "products"}],
    })
    env = Envelopes("postgres")
    tally = ingestor.ingest(spec, [
        env("c", "products", None, {**_product(5), "shop_code": "north"}),
        env("c", "products", None, {**_product(6), "shop_code": "south"}),
    ])
    assert tally.applied == 1 and tally.dead_letters == 1
    assert [(e.tenant_id, e.stream_id) for e in store.read_all(0, 100)] == [("t-north", "MULTI-PROD-5")]
    (letter,) = letters.list(None)
    assert letter.stage == "cdc_tenant" and letter.tenant_id is None
    # a table the source does not declare fails loudly (nothing acknowledged), never lands anywhere
    with pytest.raises(UnknownSource):
        ingestor.ingest(spec, [env("c", "orders", None, _order(1, "pending"))])


@pytest.mark.parametrize("split", [False, True], ids=["one batch", "payments in an earlier batch"])
def test_a_snapshot_keeps_the_history_its_final_rows_imply(parts: Any, split: bool) -> None:
    """A snapshot shows only final states: a paid order that was later cancelled, a paid order that
    was delivered. Snapshot order is products, inventory, payments, orders (SNAPSHOT_ORDER): each
    order's payments wait for it and land right after it is placed, before it ships or cancels."""
    ingestor, store, letters, _registry = parts
    spec = _spec("mariadb")
    env = Envelopes("mariadb")
    rows = [
        env("r", "products", None, _product(1), snapshot=True),
        env("r", "inventory", None, {"product_id": 1, "quantity": 20}, snapshot=True),
        env("r", "payments", None, _payment(10, 400, "completed"), snapshot=True),
        env("r", "payments", None, _payment(11, 401, "completed"), snapshot=True),
        env("r", "orders", None, _order(400, "cancelled"), snapshot=True),
        env("r", "orders", None, _order(401, "delivered"), snapshot=True),
    ]
    if split:
        ingestor.ingest(spec, rows[:4])
        assert {x.stage for x in letters.list(None)} == {"cdc_reference"}
        ingestor.ingest(spec, rows[4:])
    else:
        ingestor.ingest(spec, rows)
    assert [x for x in letters.list(None) if x.status == "failed"] == []
    state = StoreState(store, TENANT)
    cancelled, delivered = state.order("S-ORD-400"), state.order("S-ORD-401")
    assert (cancelled.status, cancelled.captured_minor) == ("cancelled", 2500)
    assert (delivered.status, delivered.captured_minor) == ("delivered", 2500)
    # the cancelled order's units were released; the delivered order's shipped, and the inventory row
    # (counted after that shipment) still says 20 on hand
    product = state.product("S-PROD-1")
    assert (product.on_hand, product.reserved) == (20, 0)
    adjustments = [e.data for e in store.load_stream(TENANT, "product", "S-PROD-1")
                   if e.event_type == "StockAdjusted"]
    assert adjustments == [{"product_id": "S-PROD-1", "delta": 2, "reason": "legacy_sync"}]

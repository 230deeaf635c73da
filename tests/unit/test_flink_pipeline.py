"""The distributed job's pure steps: CDC decoding, validation, dedup, projection parity with embedded."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from test_commands_handlers import App

from domain.events import EVENT_TYPES, RecordedEvent
from domain.validation import event_problems
from projections.flink.pipeline import (
    PARSE,
    PROJECT,
    VALIDATE,
    InvalidRecord,
    StateLookup,
    decode,
    process,
    tenant_of,
)
from projections.flink.sql import LAKE_TABLES, ddl_statements, insert_statements
from projections.rows import MemoryLookup, project


def busy_shop() -> App:
    """Every command kind through the real handlers (so every event type the domain emits)."""
    app = App()
    app.product()
    app.run("product.price", "PROD-001", {"price": "16.00"})
    app.run("product.reserve", "PROD-001", {"order_id": "ORD-X", "quantity": 1})
    app.run("product.release", "PROD-001", {"order_id": "ORD-X", "quantity": 1})
    app.user()
    o1 = app.order()
    app.run("order.confirm", o1)
    app.pay(o1)
    app.run("order.ship", o1)
    app.run("order.deliver", o1)
    app.run("order.refund", o1, {"amount": "10"})
    app.run("order.refund", o1, {"amount": "1", "lines": [{"product_id": "PROD-001", "quantity": 1}]})
    app.run("product.adjust", "PROD-001", {"delta": -1, "reason": "damage"})
    o2 = app.order(qty=1)
    failed = app.pay(o2, amount="15.00", complete=False)
    app.run("payment.fail", failed, {"reason": "card declined"})
    app.run("order.cancel", o2, {"reason": "changed mind"})
    for kind in ("page_view", "click", "add_to_cart", "checkout_started"):
        app.run("session.record", "SES-1", {"type": kind, "page_url": "/p", "user_id": "USR-00001"})
    return app


def cdc_value(e: RecordedEvent, **override: Any) -> str:
    """The record as Debezium's ExtractNewRecordState renders an events row (JSON, no schema)."""
    record = {
        "position": e.position,
        "tenant_id": e.tenant_id,
        "stream_type": e.stream_type,
        "stream_id": e.stream_id,
        "stream_version": e.stream_version,
        "event_id": str(e.event_id),
        "event_type": e.event_type,
        "schema_version": e.schema_version,
        "data": json.dumps(e.data),
        "metadata": json.dumps(e.metadata),
        "occurred_at": e.occurred_at.isoformat().replace("+00:00", "Z"),
        "recorded_at": e.recorded_at.isoformat().replace("+00:00", "Z"),
        "__source_ts_ms": 1_700_000_000_000,
        "__lsn": 123,
    }
    record.update(override)
    return json.dumps(record)


class DictState(dict[str, Any]):
    """A dict with MapState's put()."""

    def put(self, key: str, value: Any) -> None:
        self[key] = value


class Dedup:
    def __init__(self) -> None:
        self.ids: set[str] = set()

    def seen(self, event_id: str) -> bool:
        return event_id in self.ids

    def mark(self, event_id: str) -> None:
        self.ids.add(event_id)


def run_all(values: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    state = DictState()
    lookup = StateLookup(state)
    dedup = Dedup()
    serving, dead = [], []
    for v in values:
        out = process(v, dedup.seen, dedup.mark, lookup)
        if out.serving:
            serving.append(json.loads(out.serving))
        if out.dead_letter:
            dead.append(json.loads(out.dead_letter))
    return serving, dead, state


def test_every_event_the_commands_emit_is_valid() -> None:
    events = busy_shop().store.events
    types = {e.event_type for e in events}
    assert {"OrderPlaced", "OrderRefunded", "PaymentFailed", "OrderCancelled", "StockReleased",
            "StockShipped", "StockReturned", "StockAdjusted"} <= types
    for e in events:
        assert event_problems(e.event_type, e.stream_type, e.stream_id, e.schema_version, e.data) == [], e


@pytest.mark.parametrize(
    ("event_type", "stream_type", "data", "fragment"),
    [
        ("Nope", "order", {}, "unknown event type"),
        ("OrderConfirmed", "payment", {"order_id": "O"}, "belongs to stream type"),
        ("OrderConfirmed", "order", {"order_id": "OTHER"}, "!= stream id"),
        ("OrderConfirmed", "order", {"order_id": "O", "x": 1}, "unexpected fields"),
        ("OrderCancelled", "order", {"order_id": "O"}, "missing fields"),
        (
            "PaymentCompleted",
            "payment",
            {"payment_id": "O", "order_id": "x", "amount_minor": -5, "currency": "USD"},
            "out of range",
        ),  # fmt: skip
        (
            "PaymentCompleted",
            "payment",
            {"payment_id": "O", "order_id": "x", "amount_minor": "5", "currency": "USD"},
            "must be an integer",
        ),  # fmt: skip
        (
            "PaymentCompleted",
            "payment",
            {"payment_id": "O", "order_id": "x", "amount_minor": 5, "currency": "XXX"},
            "unknown currency",
        ),  # fmt: skip
        (
            "OrderPlaced",
            "order",
            {
                "order_id": "O",
                "user_id": "u",
                "currency": "USD",
                "channel": "web",
                "lines": [{"product_id": "P", "quantity": 2, "unit_price_minor": 100}],
                "total_minor": 999,
            },
            "!= sum of lines",
        ),  # fmt: skip
        (
            "OrderPlaced",
            "order",
            {
                "order_id": "O",
                "user_id": "u",
                "currency": "USD",
                "channel": "web",
                "lines": [{"product_id": "P", "quantity": 0, "unit_price_minor": 100}],
                "total_minor": 0,
            },
            "quantity",
        ),  # fmt: skip
        ("StockAdjusted", "product", {"product_id": "O", "delta": 0, "reason": "count"}, "non-zero"),
        ("StockAdjusted", "product", {"product_id": "O", "delta": 3, "reason": "theft"}, "reason"),
        ("StockShipped", "product", {"product_id": "O", "order_id": "x", "quantity": 2, "from_reserved": 3},
         "from_reserved"),
        ("StockReturned", "product", {"product_id": "O", "order_id": "x", "quantity": 1, "restocked": "yes"},
         "restocked"),
        ("OrderRefunded", "order", {"order_id": "O", "amount_minor": 1, "currency": "USD",
                                    "refunded_total_minor": 1, "full": False, "restock": True,
                                    "lines": [{"product_id": "P", "quantity": 0}]}, "returned line 1"),
    ],
)
def test_invalid_events_are_named(event_type: str, stream_type: str, data: Any, fragment: str) -> None:
    version = EVENT_TYPES[event_type][1] if event_type in EVENT_TYPES else 1
    problems = event_problems(event_type, stream_type, "O", version, data)
    assert any(fragment in p for p in problems), problems


def test_projection_through_the_pipeline_equals_the_embedded_projection() -> None:
    events = busy_shop().store.events
    serving, dead, _ = run_all([cdc_value(e) for e in events])
    assert dead == []
    assert [m["position"] for m in serving] == [e.position for e in events]
    lookup = MemoryLookup()
    for e, msg in zip(events, serving, strict=True):
        changes = project(e, lookup)
        lookup.apply(changes)
        expected = [{"table": c.table, "row": json.loads(json.dumps(c.row, default=str))} for c in changes]
        got = [{"table": c["table"], "row": c["row"]} for c in msg["changes"]]
        # timestamps travel as ISO strings; compare them parsed
        for exp, g in zip(expected, got, strict=True):
            assert exp["table"] == g["table"]
            for k, v in exp["row"].items():
                gv = g["row"][k]
                if isinstance(v, str) and isinstance(gv, str) and "T" in gv and gv[:4].isdigit():
                    assert datetime.fromisoformat(gv) == datetime.fromisoformat(v.replace(" ", "T"))
                else:
                    assert gv == v, (exp["table"], k)
        assert msg["source_ts_ms"] == 1_700_000_000_000
        assert msg["stream_id"] == e.stream_id


def test_duplicates_are_dropped_and_invalid_events_dead_lettered_once() -> None:
    events = busy_shop().store.events
    values = [cdc_value(e) for e in events]
    bad = cdc_value(events[0], position=9999, event_id="bad-1", data=json.dumps({"product_id": "PROD-001"}))
    serving, dead, _ = run_all(values + values[:5] + [bad, bad, "{not json", "null"])
    assert len(serving) == len(events)
    assert [d["stage"] for d in dead] == [VALIDATE, PARSE, PARSE]
    assert dead[0]["position"] == 9999 and "missing fields" in dead[0]["reason"]
    assert dead[0]["record"]["event_id"] == "bad-1"


def test_decode_accepts_schema_envelopes_objects_and_micros() -> None:
    e = busy_shop().store.events[0]
    micros = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1_000_000)
    record = json.loads(cdc_value(e, data=e.data, occurred_at=micros, recorded_at=micros))
    d = decode(json.dumps({"schema": {}, "payload": record}))
    assert d.event.data == e.data and d.event.occurred_at == datetime(2024, 1, 1, tzinfo=UTC)
    assert tenant_of(cdc_value(e)) == e.tenant_id and tenant_of("garbage") == ""
    with pytest.raises(InvalidRecord) as err:
        decode(cdc_value(e, stream_id=None))
    assert err.value.stage == PARSE


def test_projection_failure_is_a_project_stage_dead_letter() -> None:
    class Broken(DictState):
        def get(self, key: str, default: Any = None) -> Any:
            raise RuntimeError("state backend down")

    e = busy_shop().store.events[0]
    out = process(cdc_value(e), lambda _: False, lambda _: None, StateLookup(Broken()))
    assert out.serving is None and out.dead_letter is not None
    assert json.loads(out.dead_letter)["stage"] == PROJECT


def test_sink_sql_names_the_topics_and_the_shared_catalog() -> None:
    class Args:
        topic_prefix, bootstrap, catalog_name = "af", "127.0.0.1:9", "agentflow"
        jdbc_url, jdbc_user, jdbc_password, warehouse = "jdbc:postgresql://h/db", "u", "p'q", "file:///w"

    ddl = "\n".join(ddl_statements(Args, lake=True))
    assert "'topic' = 'af.serving'" in ddl and "'topic' = 'af.deadletter'" in ddl
    assert "'key.fields' = 'k'" in ddl and "JdbcCatalog" in ddl and "'p''q'" in ddl
    inserts = insert_statements(Args, lake=True)
    assert any("agentflow.agentflow.events" in s for s in inserts)
    assert len(insert_statements(Args, lake=False)) == 2


def test_lake_tables_match_the_embedded_lake_schemas() -> None:
    """Both deployments write one lake layout: the Flink DDL mirrors readmodels/iceberg_sink.SCHEMAS."""
    import pyarrow as pa

    from connectors.iceberg_sink import SCHEMAS

    arrow = {
        "STRING": pa.string(),
        "BIGINT": pa.int64(),
        "INT": pa.int32(),
        "TS": pa.timestamp("us", tz="UTC"),
    }
    assert set(LAKE_TABLES) == set(SCHEMAS)
    for table, columns in LAKE_TABLES.items():
        assert [(c, arrow[t]) for c, t in columns] == [(f.name, f.type) for f in SCHEMAS[table]], table


def test_lake_records_carry_history_rows_in_column_order() -> None:
    events = busy_shop().store.events
    lookup = StateLookup(DictState())
    seen: set[str] = set()
    tables: dict[str, list[tuple[Any, ...]]] = {}
    for e in events:
        out = process(cdc_value(e), seen.__contains__, seen.add, lookup)
        for table, values in out.lake:
            tables.setdefault(table, []).append(values)
    assert len(tables["events"]) == len(events)
    orders = tables["orders_history"]
    cols = [c for c, _ in LAKE_TABLES["orders_history"]]
    rows = [dict(zip(cols, v, strict=True)) for v in orders]
    assert "cancelled" in {r["status"] for r in rows} and max(r["refunded_minor"] for r in rows) == 1100
    first = dict(zip(cols, orders[0], strict=True))
    assert first["event_type"] == "OrderPlaced" and isinstance(first["placed_at"], int)
    assert json.loads(first["lines"])[0]["product_id"] == "PROD-001"
    assert {dict(zip([c for c, _ in LAKE_TABLES["payments_history"]], v, strict=True))["status"]
            for v in tables["payments_history"]} >= {"completed", "failed"}  # fmt: skip


@pytest.mark.parametrize(
    "value",
    [
        json.dumps({"tenant_id": "a b", "data": json.dumps({"tenant_id": "x"})}),
        json.dumps({"data": json.dumps({"tenant_id": "x"}), "tenant_id": "a b"}, separators=(",", ":")),
        json.dumps({"schema": {}, "payload": {"tenant_id": "a b"}}),
        json.dumps({"tenant_id": "a b"}).encode(),
    ],
)
def test_tenant_key_fast_path_agrees_with_parsing(value: str | bytes) -> None:
    assert tenant_of(value) == "a b"
    assert tenant_of(json.dumps({"tenant_id": 'we"ird'})) == 'we"ird'

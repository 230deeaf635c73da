"""The read-model store port (readmodels/ports.py ``ReadModelStore``): what the read side may rely on.

Run over chdb and, when AGENTFLOW_TEST_CLICKHOUSE_DSN names one, a ClickHouse server
(tests/integration/test_read_model_store_contract.py). A subclass provides ``store``: an empty store of
a database of its own, with every read-model table.
"""

from __future__ import annotations

from typing import Any

import pytest
from event_log import shop_log

from projections.rows import KEY_COLUMNS, ORDER_LINES, ORDERS, PRODUCTS, TABLES, MemoryLookup, Row, project
from readmodels.ports import ReadModelStore
from readmodels.schema import COLUMNS

T, U = "tenant-a", "tenant-b"


def projected(tenant: str, seed: int = 3) -> MemoryLookup:
    mem = MemoryLookup()
    for e in shop_log(tenant, seed).events:
        mem.apply(project(e, mem))
    return mem


def stored(table: str, row: Row) -> Row:
    """The columns a table keeps of a projected row."""
    return {c: row[c] for c in ("tenant_id", *(c for c, _ in COLUMNS[table]), "version")}


def fill(store: ReadModelStore, *tenants: str) -> dict[str, MemoryLookup]:
    out = {t: projected(t, seed=3 + i) for i, t in enumerate(tenants)}
    for mem in out.values():
        for table in TABLES:
            store.insert_rows(table, list(mem.tables[table].values()))
    return out


class ReadModelStoreContract:
    @pytest.fixture()
    def store(self) -> ReadModelStore:
        raise NotImplementedError("a concrete suite provides an empty store")

    def test_rows_read_back_as_projected_by_key(self, store: Any) -> None:
        mem = fill(store, T)[T]
        for table in TABLES:
            rows = mem.tables[table]
            assert rows, table
            got = store.get_rows(table, list(rows))
            want = {k: stored(table, r) for k, r in rows.items()}
            assert {k: stored(table, r) for k, r in got.items()} == want
        key, row = next(iter(mem.tables[ORDERS].items()))
        assert stored(ORDERS, store.get_row(ORDERS, key)) == stored(ORDERS, row)
        assert isinstance(store.get_row(ORDERS, key)["lines"], list)  # JSON columns come back decoded
        assert store.get_row(ORDERS, (T, "ORD-none")) is None

    def test_a_higher_version_replaces_a_row_and_a_lower_one_does_not(self, store: Any) -> None:
        mem = fill(store, T)[T]
        key, row = next(iter(mem.tables[PRODUCTS].items()))
        store.insert_rows(PRODUCTS, [{**row, "name": "newer", "version": int(row["version"]) + 10}])
        store.insert_rows(PRODUCTS, [{**row, "name": "older", "version": int(row["version"]) - 1}])
        assert store.get_row(PRODUCTS, key)["name"] == "newer"
        assert len(store.select_rows(PRODUCTS, T, "product_id = {p:String}", {"p": key[1]})) == 1

    def test_reads_are_scoped_to_a_tenant(self, store: Any) -> None:
        mems = fill(store, T, U)
        for tenant, mem in mems.items():
            got = store.select_rows(ORDERS, tenant)
            assert sorted(r["order_id"] for r in got) == sorted(k[1] for k in mem.tables[ORDERS])
            assert {r["tenant_id"] for r in got} == {tenant}
        keys = [*mems[T].tables[ORDERS], *mems[U].tables[ORDERS]]
        assert set(store.get_rows(ORDERS, keys)) == set(keys)
        only_t = [(U, k[1]) for k in mems[T].tables[ORDERS] if (U, k[1]) not in mems[U].tables[ORDERS]]
        assert only_t and store.get_rows(ORDERS, only_t) == {}

    def test_select_rows_filters_with_bound_parameters_and_orders(self, store: Any) -> None:
        mem = fill(store, T)[T]
        lines = list(mem.tables[ORDER_LINES].values())
        order_id = lines[0]["order_id"]
        got = store.select_rows(ORDER_LINES, T, "order_id = {o:String}", {"o": order_id}, "line_no DESC")
        want = sorted((r["line_no"] for r in lines if r["order_id"] == order_id), reverse=True)
        assert [r["line_no"] for r in got] == want
        assert store.select_rows(ORDER_LINES, T, "order_id = {o:String}", {"o": "x' OR 1=1 --"}) == []

    def test_query_names_the_database_and_binds_parameters(self, store: Any) -> None:
        mem = fill(store, T)[T]
        rows = store.query(
            "SELECT count() AS n FROM {db}.orders FINAL WHERE tenant_id = {t:String}", {"t": T}
        )
        assert rows == [{"n": len(mem.tables[ORDERS])}]
        assert store.query("SELECT currentDatabase() AS d, {x:Int64} AS x", {"x": 7})[0]["x"] == 7

    def test_nothing_to_insert_is_a_no_op(self, store: Any) -> None:
        store.insert_rows(ORDERS, [])
        assert store.select_rows(ORDERS, T) == []

    def test_a_scratch_store_is_empty_separate_and_dropped_on_exit(self, store: Any) -> None:
        mem = fill(store, T)[T]
        with store.scratch([ORDERS, ORDER_LINES]) as scratch:
            assert scratch.database != store.database
            assert scratch.select_rows(ORDERS, T) == []
            row = next(iter(mem.tables[ORDERS].values()))
            scratch.insert_rows(ORDERS, [row])
            assert len(scratch.select_rows(ORDERS, T)) == 1
            name = scratch.database
        assert len(store.select_rows(ORDERS, T)) == len(mem.tables[ORDERS])
        assert store.query("SELECT name FROM system.databases WHERE name = {n:String}", {"n": name}) == []

    def test_every_table_is_keyed_by_tenant_and_its_key_columns(self, store: Any) -> None:
        mem = fill(store, T)[T]
        for table in TABLES:
            for key in list(mem.tables[table])[:3]:
                assert key == (T, *(mem.tables[table][key][c] for c in KEY_COLUMNS[table]))
                assert store.get_row(table, key) is not None

"""The SQL guard without a database: what it refuses, how it rewrites, and that nothing crashes it.

(The fuzz against a real chdb holding two tenants is tests/integration/test_query_sql.py.)
"""

from __future__ import annotations

import pytest
import sqlglot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlglot import exp

from readmodels.query.sql_guard import ALLOWED_TABLES, MAX_SQL_CHARS, GuardError, guard
from readmodels.query.sql_pages import page_query

DB = "agentflow"

REJECTED = {
    "": "empty_sql",
    "DROP TABLE orders": "not_a_select",
    "INSERT INTO orders SELECT * FROM orders": "not_a_select",
    "ALTER TABLE orders DELETE WHERE 1": "not_a_select",
    "TRUNCATE TABLE orders": "not_a_select",
    "SELECT 1; SELECT 2": "not_a_select",
    "SELECT 1; DROP TABLE orders": "not_a_select",
    "EXPLAIN SELECT 1": "not_a_select",
    "SHOW TABLES": "not_a_select",
    "SELECT * FROM system.tables": "forbidden_table",
    "SELECT * FROM information_schema.tables": "forbidden_table",
    "SELECT * FROM agentflow.orders": "forbidden_table",
    "SELECT * FROM default.orders": "forbidden_table",
    "SELECT * FROM other": "unknown_table",
    "SELECT * FROM ORDERS": "unknown_table",
    "SELECT * FROM numbers(10)": "forbidden_function",
    "SELECT * FROM file('/etc/passwd')": "forbidden_function",
    "SELECT * FROM url('http://x/', CSV)": "forbidden_function",
    "SELECT * FROM s3('http://x/y')": "forbidden_function",
    "SELECT * FROM remote('h', agentflow.orders)": "forbidden_function",
    "SELECT * FROM merge('agentflow', '.*')": "forbidden_function",
    "SELECT * FROM orders WHERE order_id IN (SELECT * FROM cluster('c', o.x))": "forbidden_function",
    "SELECT dictGet('d', 'a', 1)": "forbidden_function",
    "SELECT dictGetString('d', 'a', 1)": "forbidden_function",
    "SELECT joinGet('j', 'v', 1)": "forbidden_function",
    "SELECT hostName()": "forbidden_function",
    "SELECT sleep(3)": "forbidden_function",
    "SELECT 1 SETTINGS readonly = 0": "forbidden_syntax",
    "SELECT 1 FORMAT JSON": "forbidden_syntax",
    "SELECT * FROM orders INTO OUTFILE '/tmp/x'": "invalid_sql",
    "SELECT * FROM orders WHERE tenant_id = {tenant:String}": "forbidden_syntax",
    "SELECT * FROM orders WHERE tenant_id = ?": "forbidden_syntax",
    "SELECT * FROM orders WHERE order_id IN agentflow.orders": "forbidden_syntax",
    "SELECT * FROM orders WHERE order_id IN (orders)": "forbidden_syntax",
    "SELECT * FROM orders SAMPLE 0.1": "forbidden_syntax",
    "WITH orders AS (SELECT 1) SELECT * FROM orders": "forbidden_cte",
    "SELECT * FROM (WITH x AS (SELECT 1) SELECT * FROM x) AS y, x": "unknown_table",
    "SELECT 1 AS __af_h": "forbidden_name",
    "SELECT * FROM orders ORDER BY ALL": "unsupported_order",
    "SELECT agentflow.orders.order_id FROM orders": "forbidden_table",
    "SELECT " + "1 + " * 5000 + "1": "sql_too_long",
}


@pytest.mark.parametrize("sql,code", REJECTED.items())
def test_rejected(sql: str, code: str) -> None:
    with pytest.raises(GuardError) as exc:
        guard(sql, DB)
    assert exc.value.code == code, exc.value.message


def scoped_tables(sql: str) -> list[str]:
    """An independent check of a rewrite: every table is ``agentflow.<allowed>`` read as exactly
    ``(SELECT * FROM agentflow.t FINAL WHERE tenant_id = {tenant:String})`` or a CTE name."""
    root = sqlglot.parse_one(sql, read="clickhouse")
    ctes = {c.alias for c in root.find_all(exp.CTE)}
    out = []
    for table in root.find_all(exp.Table):
        if table.name in ctes and not table.args.get("db"):
            continue
        assert table.text("db") == DB and table.name in ALLOWED_TABLES
        select = table.find_ancestor(exp.Select)
        assert select is not None and isinstance(select.parent, exp.Subquery)
        inner = select.sql("clickhouse")
        assert inner == f"SELECT * FROM {DB}.{table.name} FINAL WHERE tenant_id = {{tenant: String}}", inner
        out.append(table.name)
    return out


ACCEPTED = [
    "SELECT * FROM orders",
    "SELECT o.order_id, u.region FROM orders AS o JOIN users u ON o.user_id = u.user_id",
    "WITH x AS (SELECT * FROM orders FINAL) SELECT count() FROM x",
    "SELECT channel, count() AS n FROM orders GROUP BY channel ORDER BY 2 DESC LIMIT 3",
    "SELECT order_id FROM orders UNION ALL SELECT order_id FROM payments",
    "SELECT * FROM `orders` AS `o` WHERE `o`.`status` = 'shipped'",
    "SELECT * FROM orders WHERE order_id IN (SELECT order_id FROM payments WHERE status = 'failed')",
    "SELECT * FROM orders WHERE tenant_id = 'other' OR 1 = 1 -- comment",
    "select /* hi */ count(*) from events where event_type = 'OrderPlaced'",
    "SELECT s.session_id, p FROM sessions s ARRAY JOIN pages AS p",
]


@pytest.mark.parametrize("sql", ACCEPTED)
def test_accepted_and_scoped(sql: str) -> None:
    g = guard(sql, DB)
    names = scoped_tables(g.sql)
    assert sorted(set(names)) == list(g.tables) and names
    assert "--" not in g.sql and "/*" not in g.sql
    page_sql, params, _, _ = page_query(g, "tenant-a", 10, None)
    assert params == {"tenant": "tenant-a"} and "tenant-a" not in page_sql
    assert page_sql.endswith("LIMIT 11 OFFSET 0")


def test_user_order_becomes_hidden_keys() -> None:
    g = guard("SELECT order_id FROM orders ORDER BY placed_at DESC, order_id", DB)
    assert [d for _, d in g.keys] == [True, False]
    assert "ORDER BY" not in g.sql  # the page orders, the inner query need not
    top = guard("SELECT order_id FROM orders ORDER BY placed_at DESC LIMIT 5", DB)
    assert "ORDER BY placed_at DESC LIMIT 5" in top.sql  # top-N keeps its order


_ATOMS = st.sampled_from(
    [
        "SELECT",
        "*",
        "FROM",
        "orders",
        "users",
        "system.tables",
        "agentflow.orders",
        "numbers(3)",
        "WHERE",
        "tenant_id",
        "=",
        "'tenant-b'",
        "OR",
        "1=1",
        "UNION",
        "ALL",
        "(",
        ")",
        ",",
        ";",
        "--",
        "/*",
        "*/",
        "'",
        '"',
        "`",
        "WITH",
        "x",
        "AS",
        "IN",
        "JOIN",
        "ON",
        "dictGet('a','b',1)",
        "file('x')",
        "LIMIT",
        "10",
        "ORDER",
        "BY",
        "SETTINGS",
        "FORMAT",
        "INTO",
        "OUTFILE",
        "DROP",
        "TABLE",
        "{",
        "}",
        "\\",
        "\n",
        "count()",
        "GROUP",
        "x.y.z",
        "FINAL",
        "SAMPLE",
        "ARRAY",
        "LEFT",
        "cte",
        "EXISTS",
    ]  # fmt: skip
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_ATOMS, min_size=1, max_size=25).map(" ".join) | st.text(max_size=200))
def test_guard_never_crashes_and_never_lets_an_unscoped_table_through(sql: str) -> None:
    try:
        g = guard(sql, DB)
    except GuardError as exc:
        assert exc.code and exc.message
        return
    scoped_tables(g.sql)


def test_length_limit() -> None:
    with pytest.raises(GuardError):
        guard("SELECT 1" + " " * MAX_SQL_CHARS, DB)

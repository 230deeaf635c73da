"""Guarded read-only SQL over the read-model tables: parse, check, rewrite, paginate.

``guard(sql, database)`` accepts exactly one SELECT (or a UNION/INTERSECT/EXCEPT of SELECTs, with
CTEs and subqueries) parsed by sqlglot (dialect clickhouse) and rejects, with ``GuardError``,
everything else: DDL/DML/commands, several statements, table functions, tables that are not
allow-listed read models (``system.*``, ``information_schema.*`` and any database-qualified name
included), ``IN <table>``, dictionary/join-engine/file/URL/introspection functions, query
parameters, ``SETTINGS``/``FORMAT``/``INTO OUTFILE``, ``SAMPLE`` and the like.

Tenant scoping never trusts the user's WHERE: every reference to a read-model table is rewritten into
``(SELECT * FROM <db>.<table> FINAL WHERE tenant_id = {tenant:String}) AS <alias>`` (the tenant is a
bound parameter), so the user's query only ever sees its own tenant's current rows.

The user's outermost ORDER BY keys become hidden columns (``GuardedQuery.keys``) that pagination
(readmodels/query/sql_pages.py) orders and resumes by.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from readmodels.schema import COLUMNS

logging.getLogger("sqlglot").setLevel(logging.ERROR)  # "falling back to Command" is a 400 here

ALLOWED_TABLES = frozenset(COLUMNS)
MAX_SQL_CHARS = 20_000
MAX_NODES = 5_000
TENANT_PARAM = "tenant"
# executed with these (the user can set no settings of their own)
EXEC_SETTINGS = (
    "SETTINGS readonly = 1, max_execution_time = 10, max_result_rows = 100000, result_overflow_mode = 'throw'"
)

_SENTINEL = "__af"  # prefix of every name the rewrite introduces; user input may not contain it
_TENANT_SENTINEL = "__af_tenant__"
HIDDEN_KEY = "__af_k"  # prefix of the hidden ORDER BY key columns the rewrite adds

# functions that read other tables, files, URLs or server state, or sleep (case-insensitive)
_DENIED_FUNCTION = re.compile(
    r"^(dict.*|joinget.*|(global)?(not)?(null)?in(ignoreset)?|file.*|url.*|s3.*|remote.*|cluster.*"
    r"|input.*|hdfs.*|mysql.*|postgresql.*|jdbc|odbc|executable.*|merge.*|generaterandom.*"
    r"|numbers.*|zeros.*|values|view.*|dictionary|azure.*|gcs|iceberg.*|deltalake.*|hudi.*|sqlite"
    r"|mongodb|redis|format|loop|hascolumnintable|getsetting.*|getmacro|getserverport|catboost.*"
    r"|modelevaluate|evalmlmethod|sleep.*|filesystem.*|currentdatabase|currentschemas?|currentuser"
    r"|currentroles|enabledroles|defaultroles|currentprofiles|user|hostname|fqdn|uptime|version"
    r"|buildid|displayname|tcpport|shardnum|shardcount|initialqueryid|queryid|getoscounter|errorcodetoname"
    r"|getclienthttpheader|globalvariable|showcertificate|serveruuid|transaction.*|getmergetreesetting"
    r"|throwif|identity|ignore|getsubcolumn|getsizeofenumtype|blocknumber|rownumberinblock"
    r"|rownumberinallblocks|materialize|structuretocapnprotoschema|structuretoprotobufschema"
    r"|filesystemavailable|filesystemcapacity|filesystemunreserved|runningaccumulate|initializeaggregation"
    r"|arrayjoin_unsafe|addressto.*|demangle|tracing.*|mergetreeindex|mergetreeanalyzeindexes)$",
    re.IGNORECASE,
)
# statement-level or otherwise unsupported node types
_DENIED_NODES: tuple[type[exp.Expr], ...] = (
    exp.DDL,
    exp.DML,
    exp.Command,
    exp.Create,
    exp.Drop,
    exp.Alter,
    exp.Insert,
    exp.Update,
    exp.Delete,
    exp.Merge,
    exp.TruncateTable,
    exp.Set,
    exp.SetItem,
    exp.Use,
    exp.Describe,
    exp.Pragma,
    exp.Transaction,
    exp.Commit,
    exp.Rollback,
    exp.Copy,
    exp.Into,
    exp.Placeholder,
    exp.Parameter,
    exp.SessionParameter,
    exp.RawString,
    exp.Aliases,
    exp.TableSample,
    exp.Pivot,
    exp.Lateral,
    exp.Unnest,
    exp.Values,
    exp.WithFill,
)
_DENIED_QUERY_ARGS = (
    "settings",
    "format",
    "into",
    "options",
    "locks",
    "sample",
    "kind",
    "operation_modifiers",
)
_PARAM_TYPES = {bool: "Bool", int: "Int64", float: "Float64", str: "String"}


class GuardError(ValueError):
    """The SQL is not acceptable (a 400 for the API); ``message`` never echoes a stack trace."""

    def __init__(self, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


@dataclass(frozen=True, slots=True)
class GuardedQuery:
    """The tenant-scoped query; ``sql`` binds ``{tenant:String}`` (and ``database`` is inlined)."""

    sql: str
    tables: tuple[str, ...]
    keys: tuple[tuple[str, bool], ...]  # hidden key column, descending
    fingerprint: str  # of the normalised input query (cursors are bound to it)


def _reject(code: str, message: str, details: Any = None) -> GuardError:
    return GuardError(code, message, details)


def _func_name(node: exp.Func) -> str:
    if isinstance(node, exp.Anonymous | exp.AnonymousAggFunc):
        return str(node.name)
    return str(node.sql_name()).replace("_", "")


def _cte_in_scope(table: exp.Table, name: str) -> bool:
    node: exp.Expr | None = table.parent
    while node is not None:
        with_ = node.args.get("with_") or node.args.get("with")
        if isinstance(with_, exp.With) and any(
            isinstance(cte, exp.CTE) and cte.alias == name for cte in with_.expressions
        ):
            return True
        node = node.parent
    return False


def _check(root: exp.Expr) -> list[exp.Table]:
    """Raise GuardError for anything not allowed; return the read-model table references."""
    if not isinstance(root, exp.Select | exp.SetOperation):
        raise _reject("not_a_select", "only a single SELECT statement is allowed")
    cte_names: set[str] = set()
    tables: list[exp.Table] = []
    for count, node in enumerate(root.walk(), 1):
        if count > MAX_NODES:
            raise _reject("query_too_complex", f"the query has more than {MAX_NODES} syntax nodes")
        if isinstance(node, _DENIED_NODES):
            raise _reject("forbidden_syntax", f"{type(node).__name__} is not allowed in a query")
        if isinstance(node, exp.Query | exp.Subquery) and not isinstance(
            node, exp.Select | exp.SetOperation | exp.Subquery
        ):
            raise _reject("forbidden_syntax", f"{type(node).__name__} is not allowed in a query")
        for arg in _DENIED_QUERY_ARGS:
            if isinstance(node, exp.Query) and node.args.get(arg):
                raise _reject("forbidden_syntax", f"{arg.upper()} is not allowed in a query")
        if isinstance(node, exp.CTE):
            name = node.alias
            if name.lower() in ALLOWED_TABLES or name.lower().startswith(_SENTINEL):
                raise _reject("forbidden_cte", f"a CTE may not shadow the table name {name!r}")
            cte_names.add(name)
        elif isinstance(node, exp.Func):
            name = _func_name(node)
            if _DENIED_FUNCTION.match(name):
                raise _reject("forbidden_function", f"function {name} is not allowed", {"function": name})
        elif isinstance(node, exp.In):
            if node.args.get("field") is not None:
                raise _reject("forbidden_syntax", "IN <table> is not allowed; use IN (SELECT ...)")
            if any(isinstance(e, exp.Column | exp.Dot) for e in node.expressions):
                raise _reject(
                    "forbidden_syntax", "IN (<identifier>) is not allowed; use = or IN (SELECT ...)"
                )
        elif isinstance(node, exp.Column):
            if node.args.get("db") is not None or node.args.get("catalog") is not None:
                raise _reject("forbidden_table", "database-qualified names are not allowed")
            if node.name.upper() == "ALL" and isinstance(node.parent, exp.Ordered):
                raise _reject("unsupported_order", "ORDER BY ALL is not supported; name the columns")
        elif isinstance(node, exp.Table):
            tables.append(node)
        elif isinstance(node, exp.Identifier) and node.name.lower().startswith(_SENTINEL):
            raise _reject("forbidden_name", f"names starting with {_SENTINEL} are reserved")
    out: list[exp.Table] = []
    for table in tables:
        if not isinstance(table.this, exp.Identifier):
            raise _reject("forbidden_table", "table functions are not allowed")
        if table.args.get("db") is not None or table.args.get("catalog") is not None:
            raise _reject(
                "forbidden_table",
                f"only the read-model tables {', '.join(sorted(ALLOWED_TABLES))} can be queried, "
                "without a database name",
                {"allowed_tables": sorted(ALLOWED_TABLES)},
            )
        extra = {k for k, v in table.args.items() if v and k not in ("this", "alias")}
        if extra:
            raise _reject("forbidden_syntax", f"unsupported table clause {', '.join(sorted(extra))}")
        name = table.name
        if name in ALLOWED_TABLES:
            out.append(table)
        elif name in cte_names and _cte_in_scope(table, name):
            continue
        else:
            raise _reject(
                "unknown_table",
                f"unknown table {name!r}; allowed: {', '.join(sorted(ALLOWED_TABLES))}",
                {"allowed_tables": sorted(ALLOWED_TABLES)},
            )
    return out


def _scoped(table: exp.Table, database: str) -> exp.Subquery:
    inner = sqlglot.parse_one(
        f"SELECT * FROM {database}.{table.name} FINAL WHERE tenant_id = {_TENANT_SENTINEL}",
        read="clickhouse",
    )
    alias = table.args.get("alias")
    if alias is None:
        alias = exp.TableAlias(this=exp.to_identifier(table.name))
    return exp.Subquery(this=inner, alias=alias.copy())


def _order_keys(root: exp.Expr) -> list[tuple[exp.Expr, bool]]:
    """(expression, descending) of the outermost ORDER BY; removed from the root unless it limits."""
    order = root.args.get("order")
    if not isinstance(order, exp.Order):
        return []
    keys: list[tuple[exp.Expr, bool]] = []
    projections = root.expressions if isinstance(root, exp.Select) else []
    for ordered in order.expressions:
        if not isinstance(ordered, exp.Ordered):
            raise _reject("unsupported_order", "unsupported ORDER BY")
        expr = ordered.this
        if isinstance(expr, exp.Literal) and not expr.is_string:
            position = int(expr.name) if expr.name.isdigit() else 0
            if not isinstance(root, exp.Select) or not 1 <= position <= len(projections):
                raise _reject("unsupported_order", "ORDER BY <position> must name a column of the SELECT")
            proj = projections[position - 1]
            if isinstance(proj, exp.Star):
                raise _reject("unsupported_order", "ORDER BY <position> cannot name *")
            expr = exp.column(proj.alias) if isinstance(proj, exp.Alias) else proj
        elif isinstance(root, exp.SetOperation) and not isinstance(expr, exp.Column):
            raise _reject("unsupported_order", "ORDER BY of a UNION must name output columns")
        keys.append((expr.copy(), bool(ordered.args.get("desc"))))
    if not root.args.get("limit") and not root.args.get("offset"):
        root.set("order", None)
    return keys


def guard(sql: str, database: str) -> GuardedQuery:
    """Check and rewrite ``sql`` (raises GuardError); ``database`` holds the read-model tables."""
    if not isinstance(sql, str) or not sql.strip():
        raise _reject("empty_sql", "sql must be a non-empty string")
    if len(sql) > MAX_SQL_CHARS:
        raise _reject("sql_too_long", f"sql is longer than {MAX_SQL_CHARS} characters")
    if "{" in sql or "}" in sql:
        raise _reject("forbidden_syntax", "braces (query parameters, map literals) are not allowed")
    if _SENTINEL in sql.lower() or "\x00" in sql:
        raise _reject("forbidden_name", f"names starting with {_SENTINEL} are reserved")
    try:
        statements = [s for s in sqlglot.parse(sql, read="clickhouse") if s is not None]
    except (SqlglotError, RecursionError, ValueError) as exc:
        raise _reject("invalid_sql", f"sql does not parse: {str(exc).splitlines()[0][:200]}") from None
    if len(statements) != 1:
        raise _reject("not_a_select", "exactly one SELECT statement is allowed")
    root = statements[0]
    try:
        tables = _check(root)
        fingerprint = hashlib.sha256(root.sql("clickhouse", comments=False).encode()).hexdigest()[:16]
        keys = _order_keys(root)
        for final in list(root.find_all(exp.Final)):
            if isinstance(final.this, exp.Table):  # the rewrite reads FINAL already
                final.replace(final.this)
        for table in tables:
            table.replace(_scoped(table, database))
        hidden: list[tuple[str, bool]] = []
        if isinstance(root, exp.Select):
            for i, (expr, desc) in enumerate(keys):
                root.append("expressions", exp.alias_(expr, f"{HIDDEN_KEY}{i}"))
                hidden.append((f"{HIDDEN_KEY}{i}", desc))
        else:
            hidden = [(expr.name, desc) for expr, desc in keys]
        text = root.sql("clickhouse", comments=False)
    except RecursionError:
        raise _reject("query_too_complex", "the query is nested too deeply") from None
    text = text.replace(_TENANT_SENTINEL, "{tenant:String}")
    verify_scoped(text, database)
    return GuardedQuery(text, tuple(sorted({t.name for t in tables})), tuple(hidden), fingerprint)


def _is_scope_select(select: exp.Expr | None, table: exp.Table) -> bool:
    """``SELECT * FROM <table> FINAL WHERE tenant_id = {tenant:String}`` exactly, as a subquery."""
    if not isinstance(select, exp.Select) or not isinstance(select.parent, exp.Subquery):
        return False
    if set(k for k, v in select.args.items() if v) != {"expressions", "from_", "where"}:
        return False
    if len(select.expressions) != 1 or not isinstance(select.expressions[0], exp.Star):
        return False
    source = select.args["from_"].this
    if not isinstance(source, exp.Final) or source.this is not table:
        return False
    cond = select.args["where"].this
    return (
        isinstance(cond, exp.EQ)
        and isinstance(cond.this, exp.Column)
        and cond.this.name == "tenant_id"
        and not cond.this.table
        and isinstance(cond.expression, exp.Placeholder)
        and cond.expression.name == TENANT_PARAM
    )


def verify_scoped(sql: str, database: str) -> None:
    """Re-parse a rewritten query: every table is an allow-listed read model of ``database`` read
    through the tenant-scoped subquery, or a CTE in scope (defence in depth: raises GuardError)."""
    try:
        root = sqlglot.parse_one(sql, read="clickhouse")
    except (SqlglotError, RecursionError, ValueError):
        raise _reject("rewrite_failed", "the query could not be scoped to the tenant") from None
    cte_names = {cte.alias for cte in root.find_all(exp.CTE)}
    for table in root.find_all(exp.Table):
        if table.args.get("db") is not None:
            ok = (
                table.args.get("catalog") is None
                and table.text("db") == database
                and table.name in ALLOWED_TABLES
                and isinstance(table.this, exp.Identifier)
                and isinstance(table.parent, exp.Final)
                and isinstance(table.parent.parent, exp.From)
                and _is_scope_select(table.parent.parent.parent, table)
            )
        else:
            ok = (
                isinstance(table.this, exp.Identifier)
                and table.name not in ALLOWED_TABLES
                and table.name in cte_names
                and _cte_in_scope(table, table.name)
            )
        if not ok:
            raise _reject("rewrite_failed", "the query could not be scoped to the tenant")
    for func in root.find_all(exp.Func):
        if _DENIED_FUNCTION.match(_func_name(func)):
            raise _reject("rewrite_failed", "the query could not be scoped to the tenant")
    if any(isinstance(p, exp.Placeholder) and p.name != TENANT_PARAM for p in root.find_all(exp.Placeholder)):
        raise _reject("rewrite_failed", "the query could not be scoped to the tenant")

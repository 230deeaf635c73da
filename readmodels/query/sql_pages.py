"""Deterministic pages of a guarded query (readmodels/query/sql_guard.py) with opaque keyset cursors.

The guarded query is wrapped and ordered by the user's ORDER BY keys (nulls last) and then by a hash
of the whole row; ``next_cursor`` is an opaque keyset cursor (the last row's key values, its row hash
and how many identical rows were already returned), bound to the query and the tenant. Cursor values
are bound parameters too; a key of a type that cannot be bound falls back to an offset cursor.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlglot import exp

from readmodels.query.sql_guard import EXEC_SETTINGS, HIDDEN_KEY, TENANT_PARAM, GuardedQuery, GuardError

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000

_HASH = "__af_h"  # the row hash column (the rewrite's reserved prefix)


def _reject(code: str, message: str) -> GuardError:
    return GuardError(code, message)


@dataclass(frozen=True, slots=True)
class Page:
    columns: list[str]
    rows: list[dict[str, Any]]
    next_cursor: str | None
    has_more: bool
    sql: str
    total_count: int | None = None


def _q(name: str) -> str:
    return exp.to_identifier(name, quoted=True).sql("clickhouse")


class _Hash(int):
    """The row hash (always bound as UInt64)."""


def _encode_value(value: Any) -> list[Any] | None:
    """(type tag, JSON value) of a key value that can be bound as a parameter; None otherwise."""
    if isinstance(value, _Hash):
        return ["UInt64", int(value)]
    if value is None:
        return ["null", None]
    if isinstance(value, bool):
        return ["Bool", value]
    if isinstance(value, int):
        return ["Int64" if -(2**63) <= value < 2**63 else "UInt64", value]
    if isinstance(value, float):
        return ["Float64", repr(value)]
    if isinstance(value, str):
        return ["String", value]
    if isinstance(value, datetime):
        v = value if value.tzinfo is None else value.astimezone(UTC).replace(tzinfo=None)
        return ["DateTime64(6, 'UTC')", v.isoformat(" ", "microseconds")]
    if isinstance(value, date):
        return ["Date32", value.isoformat()]
    return None


_CURSOR_TYPES = {"null", "Bool", "Int64", "UInt64", "Float64", "String", "DateTime64(6, 'UTC')", "Date32"}


def _decode_value(tagged: Any) -> tuple[str, Any]:
    if not isinstance(tagged, list) or len(tagged) != 2 or tagged[0] not in _CURSOR_TYPES:
        raise _reject("invalid_cursor", "cursor is malformed")
    tag, value = tagged
    ok = {
        "null": value is None,
        "Bool": isinstance(value, bool),
        "Int64": isinstance(value, int) and not isinstance(value, bool),
        "UInt64": isinstance(value, int) and not isinstance(value, bool),
        "Float64": isinstance(value, str),
        "String": isinstance(value, str),
        "DateTime64(6, 'UTC')": isinstance(value, str),
        "Date32": isinstance(value, str),
    }[tag]
    if not ok:
        raise _reject("invalid_cursor", "cursor is malformed")
    if tag == "Float64":
        try:
            value = float(value)
        except ValueError:
            raise _reject("invalid_cursor", "cursor is malformed") from None
    return tag, value


def _cursor_token(body: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode()).decode().rstrip("=")


def _read_cursor(cursor: str, fingerprint: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        body = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: a client's cursor of deeply nested JSON (e.g. base64 of "[" * 3000)
        raise _reject("invalid_cursor", "cursor is malformed") from None
    if not isinstance(body, dict) or body.get("v") != 1:
        raise _reject("invalid_cursor", "cursor is malformed")
    if body.get("f") != fingerprint:
        raise _reject("invalid_cursor", "cursor belongs to a different query or tenant")
    skip = body.get("s", 0)
    if not isinstance(skip, int) or isinstance(skip, bool) or not 0 <= skip <= 10**9:
        raise _reject("invalid_cursor", "cursor is malformed")
    return body


def _keyset_predicate(
    keys: list[tuple[str, bool]], values: list[tuple[str, Any]], params: dict[str, Any]
) -> str:
    """Rows at or after the boundary in the order ``keys`` (the last key compares with >=)."""
    terms: list[str] = []
    equal: list[str] = []
    for i, ((col, desc), (tag, value)) in enumerate(zip(keys, values, strict=True)):
        last = i == len(keys) - 1
        if tag == "null":
            cmp = None if not last else f"isNull({col})"
            eq = f"isNull({col})"
        else:
            params[f"af_c{i}"] = value
            p = f"{{af_c{i}:{tag}}}"
            op = ("<" if desc else ">") + ("=" if last else "")
            cmp = f"{col} {op} {p}"
            eq = f"{col} = {p}"
        if cmp is not None:
            terms.append("(" + " AND ".join([*equal, cmp]) + ")")
        equal.append(eq)
    return " OR ".join(terms) if terms else "0"


def page_query(
    g: GuardedQuery, tenant: str, limit: int, cursor: str | None
) -> tuple[str, dict[str, Any], list[tuple[str, bool]], dict[str, Any] | None]:
    """(sql, params, order keys, decoded cursor) of one page of ``g``: limit+1 rows."""
    # order: for each user key (nulls last, then the key), then the row hash
    order: list[tuple[str, bool]] = []
    for col, desc in g.keys:
        order.append((f"isNull({_q(col)})", False))
        order.append((_q(col), desc))
    order.append((_HASH, False))
    params: dict[str, Any] = {TENANT_PARAM: tenant}
    where = ""
    state = None
    if cursor:
        state = _read_cursor(cursor, _fingerprint(g, tenant))
        if "o" in state:
            offset = state["o"]
            if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
                raise _reject("invalid_cursor", "cursor is malformed")
        else:
            raw = state.get("k")
            if not isinstance(raw, list) or len(raw) != len(order):
                raise _reject("invalid_cursor", "cursor is malformed")
            values = [_decode_value(v) for v in raw]
            where = " WHERE " + _keyset_predicate(order, values, params)
    offset = state["o"] if state and "o" in state else state.get("s", 0) if state else 0
    order_sql = ", ".join(f"{c} {'DESC' if d else 'ASC'}" for c, d in order)
    sql = (
        f"SELECT *, cityHash64(toString(tuple(*))) AS {_HASH} FROM ({g.sql}) AS __af_q{where} "
        f"ORDER BY {order_sql} LIMIT {int(limit) + 1} OFFSET {int(offset)}"
    )
    return sql, params, order, state


def _fingerprint(g: GuardedQuery, tenant: str) -> str:
    return hashlib.sha256(f"{g.fingerprint}|{tenant}".encode()).hexdigest()[:16]


def _row_key(row: dict[str, Any], g: GuardedQuery) -> list[Any]:
    values: list[Any] = []
    for col, _ in g.keys:
        v = row.get(col)
        values.append(1 if v is None else 0)
        values.append(v)
    values.append(_Hash(row[_HASH]))
    return values


def run_page(
    query: Callable[[str, dict[str, Any]], list[dict[str, Any]]],
    g: GuardedQuery,
    tenant: str,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
    count: bool = True,
) -> Page:
    """One page of ``g`` for ``tenant`` through ``query(sql, params)`` (e.g. ClickHouseStore.query)."""
    limit = max(1, min(int(limit), MAX_LIMIT))
    sql, params, _order, state = page_query(g, tenant, limit, cursor)
    rows = query(f"{sql} {EXEC_SETTINGS}", params)
    has_more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if has_more and rows:
        fp = _fingerprint(g, tenant)
        last = _row_key(rows[-1], g)
        tagged = [_encode_value(v) for v in last]
        if any(t is None for t in tagged):  # a key of a type we do not bind: an offset cursor
            before = state["o"] if state and "o" in state else 0
            next_cursor = _cursor_token({"v": 1, "f": fp, "o": before + len(rows)})
        else:
            same = 0
            for r in reversed(rows):
                if _row_key(r, g) != last:
                    break
                same += 1
            if same == len(rows) and state and state.get("k") == tagged:
                same += int(state.get("s", 0))
            next_cursor = _cursor_token({"v": 1, "f": fp, "k": tagged, "s": same})
    hidden = {_HASH, *(c for c, _ in g.keys if c.startswith(HIDDEN_KEY))}
    columns = [c for c in (rows[0] if rows else {}) if c not in hidden]
    out = [{c: r[c] for c in columns} for r in rows]
    total = None
    if count:
        total = int(
            query(f"SELECT count() AS n FROM ({g.sql}) {EXEC_SETTINGS}", {TENANT_PARAM: tenant})[0]["n"]
        )
    return Page(columns, out, next_cursor, has_more, sql, total)

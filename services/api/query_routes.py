"""``POST /v1/query`` (semantic, guarded SQL, or a plain-language question) and ``/v1/query/explain``.

Body (exactly one mode): ``{"sql": "SELECT ..."}``, ``{"metrics": [...], "dimensions": [...],
"filters": {...}, "window": "1h", "grain": "5m"}``, or ``{"question": "revenue by channel today"}``;
with ``limit`` (default 1000, max 10000) and ``cursor`` (the ``next_cursor`` of the previous page).
The tenant comes from the API key. Anything that does not map or is not allowed answers 400 with a
machine-readable code and, where it helps, suggestions.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
from datetime import UTC, datetime
from typing import Any

from anyio import to_thread
from litestar import Request, Response, post

from readmodels.query import semantic
from readmodels.query.question import parse_question
from readmodels.query.semantic import SemanticError, SemanticQuery
from readmodels.query.sql_guard import GuardError, guard
from readmodels.query.sql_pages import DEFAULT_LIMIT, MAX_LIMIT, run_page
from readmodels.schema import METRIC_TABLES
from readmodels.windows import WINDOWS
from services.api.context import json_body, json_response, runtime_of, tenant_of
from services.api.errors import ApiError
from services.api.read_routes import _compute_metric, _flush_serving, _meta, await_position
from services.runtime import Runtime

_MODES = ("sql", "question", "metrics")


def _mode(body: dict[str, Any]) -> str:
    given = [m for m in _MODES if m in body]
    if len(given) != 1:
        raise ApiError(
            422,
            "invalid_query",
            "the body needs exactly one of sql, question or metrics",
            {"modes": list(_MODES)},
        )
    return given[0]


def _limit(body: dict[str, Any]) -> int:
    raw = body.get("limit", DEFAULT_LIMIT)
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_LIMIT:
        raise ApiError(422, "invalid_limit", f"limit must be an integer from 1 to {MAX_LIMIT}")
    return raw


def _cursor(body: dict[str, Any]) -> str | None:
    raw = body.get("cursor")
    if raw is not None and (not isinstance(raw, str) or len(raw) > 4096):
        raise ApiError(400, "invalid_cursor", "cursor must be the next_cursor of a previous page")
    return raw or None


def _bad(exc: GuardError | SemanticError) -> ApiError:
    return ApiError(400, exc.code, exc.message, exc.details)


_CH_NOISE = re.compile(r"^.*?DB::Exception:\s*|\s*(In scope|Stack trace|\(version).*$", re.DOTALL)


def _query_failed(exc: Exception) -> ApiError:
    """A ClickHouse error as a 400, without the (rewritten) SQL text or a stack trace."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    text = _CH_NOISE.sub("", text)[:300] or "the query failed"
    return ApiError(400, "query_failed", f"the query failed: {text}")


def _needs_flush(runtime: Runtime, tables: list[str] | tuple[str, ...]) -> None:
    if not set(tables) <= METRIC_TABLES:
        _flush_serving(runtime)


# ---- semantic paging (the result is computed whole, then paged by an offset cursor) ------------


def _semantic_cursor(q: SemanticQuery, tenant: str, offset: int) -> str:
    fp = hashlib.sha256(json.dumps([q.as_dict(), tenant], sort_keys=True).encode()).hexdigest()[:16]
    raw = json.dumps({"v": 1, "f": fp, "o": offset}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _semantic_offset(q: SemanticQuery, tenant: str, cursor: str | None) -> int:
    if cursor is None:
        return 0
    try:
        body = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        offset = body["o"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise ApiError(400, "invalid_cursor", "cursor is malformed") from None
    if not isinstance(offset, int) or offset < 0 or cursor != _semantic_cursor(q, tenant, offset):
        raise ApiError(400, "invalid_cursor", "cursor belongs to a different query or tenant")
    return offset


def _answer(q: SemanticQuery, result: semantic.Result) -> str:
    """One plain sentence of the result (the first rows)."""
    window = "now" if q.window == "now" else f"over the last {q.window}"
    parts = []
    for row in result.rows[:5]:
        label = ", ".join(str(row[c]) for c in result.columns if c not in q.metrics)
        values = ", ".join(f"{m} {row[m]:.4g} {result.units[m]}".strip() for m in q.metrics)
        parts.append(f"{label}: {values}" if label else values)
    more = f" (+{len(result.rows) - 5} more rows)" if len(result.rows) > 5 else ""
    return f"{', '.join(q.metrics)} {window}: " + ("; ".join(parts) or "no data") + more


def _run_semantic(
    runtime: Runtime, tenant: str, q: SemanticQuery, limit: int, cursor: str | None
) -> dict[str, Any]:
    offset = _semantic_offset(q, tenant, cursor)
    cat = semantic.catalog()
    _needs_flush(runtime, [cat[m].table for m in q.metrics])
    now = datetime.now(UTC)

    def bespoke(name: str, window: str) -> float:
        return float(
            _compute_metric(runtime, tenant, name, window, runtime.settings.reporting_currency, None)["value"]
        )

    result = semantic.execute(
        runtime.clickhouse.query, q, tenant, now, runtime.settings.reporting_currency, bespoke
    )
    rows = result.rows[offset : offset + limit]
    has_more = offset + limit < len(result.rows)
    return {
        "columns": result.columns,
        "rows": rows,
        "next_cursor": _semantic_cursor(q, tenant, offset + limit) if has_more else None,
        "has_more": has_more,
        "total_count": len(result.rows),
        "sql": "\n;\n".join(result.sql),
        "tables": result.tables,
        "units": result.units,
        "currency": result.currency,
        "answer": _answer(q, result),
        "interpretation": q.as_dict(),
    }


def _run_sql(runtime: Runtime, tenant: str, sql: str, limit: int, cursor: str | None) -> dict[str, Any]:
    g = guard(sql, runtime.clickhouse.database)
    _needs_flush(runtime, g.tables)
    try:
        page = run_page(runtime.clickhouse.query, g, tenant, limit, cursor)
    except GuardError:
        raise
    except Exception as exc:
        raise _query_failed(exc) from None
    rows = [{k: _jsonable(v) for k, v in r.items()} for r in page.rows]
    return {
        "columns": page.columns,
        "rows": rows,
        "next_cursor": page.next_cursor,
        "has_more": page.has_more,
        "total_count": page.total_count,
        "sql": g.sql,
        "tables": list(g.tables),
        "answer": None,
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)


def _semantic_of(runtime: Runtime, mode: str, body: dict[str, Any]) -> SemanticQuery:
    if mode == "question":
        q, _ = parse_question(body["question"], runtime.settings.reporting_currency)
        return q
    return semantic.validate(body)


@post("/v1/query", status_code=200)
async def query(request: Request[Any, Any, Any]) -> Response[bytes]:
    tenant = tenant_of(request)
    runtime = runtime_of(request)
    body = await json_body(request)
    mode = _mode(body)
    limit, cursor = _limit(body), _cursor(body)
    fresh = await await_position(request, runtime)
    started = time.perf_counter()
    try:
        if mode == "sql":
            out = await to_thread.run_sync(_run_sql, runtime, tenant, body["sql"], limit, cursor)
        else:
            q = _semantic_of(runtime, mode, body)
            out = await to_thread.run_sync(_run_semantic, runtime, tenant, q, limit, cursor)
    except (GuardError, SemanticError) as exc:
        raise _bad(exc) from None
    elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
    meta = _meta(runtime, None, fresh)
    meta.update(sql=out["sql"], tables=out["tables"], mode=mode, execution_time_ms=elapsed_ms)
    out.update(
        mode=mode,
        page_size=len(out["rows"]),
        meta=meta,
        metadata={
            "rows_returned": len(out["rows"]),
            "execution_time_ms": elapsed_ms,
            "data_freshness_seconds": meta["freshness_seconds"],
        },
    )
    return json_response(out)


@post("/v1/query/explain", status_code=200)
async def explain(request: Request[Any, Any, Any]) -> Response[bytes]:
    tenant_of(request)
    runtime = runtime_of(request)
    body = await json_body(request)
    mode = _mode(body)
    database = runtime.clickhouse.database
    try:
        if mode == "sql":
            g = guard(body["sql"], database)
            return json_response(
                {
                    "mode": mode,
                    "sql": g.sql,
                    "tables": list(g.tables),
                    "parameters": {"tenant": "<from your API key>"},
                    "pagination": "keyset: ORDER BY keys (nulls last), then a row hash",
                }
            )
        q = _semantic_of(runtime, mode, body)
    except (GuardError, SemanticError) as exc:
        raise _bad(exc) from None
    compiled = semantic.compile_query(q, database)
    return json_response(
        {
            "mode": mode,
            "interpretation": q.as_dict(),
            "sql": "\n;\n".join(c.sql for c in compiled if c.sql),
            "queries": [
                {
                    "metric": c.metric,
                    "sql": c.sql,
                    "tables": list(c.tables),
                    "parameters": {
                        "tenant": "<from your API key>",
                        **c.params,
                        **({"since": f"now - {q.window}", "until": "now"} if q.window in WINDOWS else {}),
                    },
                    **({} if c.sql else {"computed_by": f"GET /v1/metrics/{c.metric}"}),
                }
                for c in compiled
            ],
            "tables": sorted({t for c in compiled for t in c.tables}),
        }
    )


QUERY_ROUTES = [query, explain]

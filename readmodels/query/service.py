"""The query service behind ``POST /v1/query`` and ``/v1/query/explain``: guarded SQL, semantic queries
and plain-language questions, for one tenant, paged.

A request names exactly one mode (``sql``, ``metrics`` or ``question``; ``MODES``). Guarded SQL pages by
keyset (readmodels.query.sql_guard); a semantic result is computed whole, then paged by an offset cursor
bound to the query and the tenant. Anything that does not map or is not allowed raises SemanticError,
GuardError or QueryRefused (all with ``code``, ``message``, ``details``: a 400 for the API).

An answer's ``answer`` is the page's rows (a list of row objects, as existing clients read it: API.md);
the plain sentence of a semantic answer is ``answer_text``. An explanation names the question, the tables
(also as ``tables_accessed``) and the ``engine`` that turned the request into SQL (ENGINES).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from readmodels.ports import EventHistory, ReadModelStore, ServingProgress
from readmodels.query import semantic
from readmodels.query.question import live_values, parse_question
from readmodels.query.semantic import SemanticError, SemanticQuery
from readmodels.query.sql_guard import GuardError, guard
from readmodels.query.sql_pages import run_page
from readmodels.schema import METRIC_TABLES
from readmodels.time_travel import DEFAULT_MAX_EVENTS
from readmodels.windows import WINDOWS

MODES = ("sql", "question", "metrics")
# mode -> what turned the request into SQL: the rule-based question parser, the semantic layer, or the
# SQL guard (the caller's SQL, checked and scoped to the tenant)
ENGINES = {"question": "rule_based", "metrics": "semantic_layer", "sql": "guarded_sql"}
# (tenant, metric, window) -> the value of a metric computed without SQL here (active_sessions,
# error_rate), in the reporting currency
MetricValue = Callable[[str, str, str], float]


class QueryRefused(SemanticError):
    """A query that cannot run as asked: a cursor of another query or tenant, or a failed query."""


_CH_NOISE = re.compile(r"^.*?DB::Exception:\s*|\s*(In scope|Stack trace|\(version).*$", re.DOTALL)


def _query_failed(exc: Exception) -> QueryRefused:
    """A ClickHouse error, without the (rewritten) SQL text or a stack trace."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    text = _CH_NOISE.sub("", text)[:300] or "the query failed"
    return QueryRefused("query_failed", f"the query failed: {text}")


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)


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
    except (binascii.Error, ValueError, KeyError, TypeError, RecursionError):
        # RecursionError: a client's cursor of deeply nested JSON (e.g. base64 of "[" * 3000)
        raise QueryRefused("invalid_cursor", "cursor is malformed") from None
    if not isinstance(offset, int) or offset < 0 or cursor != _semantic_cursor(q, tenant, offset):
        raise QueryRefused("invalid_cursor", "cursor belongs to a different query or tenant")
    return offset


def _answer(q: SemanticQuery, result: semantic.Result) -> str:
    """One plain sentence of the result (the first rows)."""
    window = "now" if q.window == "now" else f"over the last {q.window}"
    parts = []
    for row in result.rows[:5]:
        label = ", ".join(str(row[c]) for c in result.columns if c in (semantic.BUCKET, *q.dimensions))
        values = ", ".join(f"{m} {row[m]:.4g} {result.units[m]}".strip() for m in q.metrics)
        parts.append(f"{label}: {values}" if label else values)
    more = f" (+{len(result.rows) - 5} more rows)" if len(result.rows) > 5 else ""
    return f"{', '.join(q.metrics)} {window}: " + ("; ".join(parts) or "no data") + more


class QueryService:
    def __init__(
        self,
        read_models: ReadModelStore,
        progress: ServingProgress,
        reporting_currency: str,
        metric_value: MetricValue | None = None,
        history: EventHistory | None = None,
        time_travel_max_events: int = DEFAULT_MAX_EVENTS,
    ) -> None:
        self.read_models = read_models
        self.progress = progress
        self.reporting_currency = reporting_currency
        self.metric_value = metric_value
        self.history = history  # as_of: the read model as it stood, folded from the event store
        self.time_travel_max_events = time_travel_max_events

    def _needs_flush(self, tables: Sequence[str]) -> None:
        """Tables the serving sink writes lazily are caught up before a query reads them."""
        if not set(tables) <= METRIC_TABLES:
            self.progress.flush_serving()

    def semantic_of(self, mode: str, body: dict[str, Any], tenant: str | None = None) -> SemanticQuery:
        """The semantic query of a ``question`` or ``metrics`` request (raises SemanticError); with a
        ``tenant``, a question may name the values of its dimensions (read model)."""
        if mode == "question":
            values = (
                live_values(self.read_models.query, tenant, self.progress.flush_serving)
                if tenant is not None
                else None
            )
            q, _ = parse_question(body["question"], self.reporting_currency, values, datetime.now(UTC))
            return q
        return semantic.validate(body)

    def run(
        self, tenant: str, mode: str, body: dict[str, Any], limit: int, cursor: str | None, fresh: bool = True
    ) -> dict[str, Any]:
        """One page of the answer to ``body`` (mode ``mode``) for ``tenant``; ``meta.stale`` when the
        caller accepted a read model behind its ``min_position``. Blocking."""
        started = time.perf_counter()
        if mode == "sql":
            out = self._run_sql(tenant, body["sql"], limit, cursor)
        else:
            out = self._run_semantic(tenant, self.semantic_of(mode, body, tenant), limit, cursor)
        elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
        meta: dict[str, Any] = {
            "as_of": _iso(datetime.now(UTC)),
            "is_historical": False,
            "freshness_seconds": self.progress.freshness_seconds(),
            "as_of_position": self.progress.watermark,
        }
        if out.get("interpretation", {}).get("as_of"):
            meta.update(as_of=out["interpretation"]["as_of"], is_historical=True)
        if not fresh:
            meta["stale"] = True
        meta.update(sql=out["sql"], tables=out["tables"], mode=mode, execution_time_ms=elapsed_ms)
        out.update(
            mode=mode,
            answer=out["rows"],
            page_size=len(out["rows"]),
            meta=meta,
            metadata={
                "rows_returned": len(out["rows"]),
                "execution_time_ms": elapsed_ms,
                "data_freshness_seconds": meta["freshness_seconds"],
            },
        )
        return out

    def _run_semantic(
        self, tenant: str, q: SemanticQuery, limit: int, cursor: str | None
    ) -> dict[str, Any]:
        offset = _semantic_offset(q, tenant, cursor)
        cat = semantic.catalog()
        now = datetime.now(UTC)
        metric_value = self.metric_value
        bespoke = (lambda name, window: metric_value(tenant, name, window)) if metric_value else None
        if q.as_of is not None:
            if self.history is None:
                raise QueryRefused("time_travel_unavailable", "as_of needs the event store")
            if q.instant(now) > now:
                raise QueryRefused("as_of_in_future", "as_of must not be in the future")
            with semantic.folded(
                self.history, self.read_models, q, tenant, now, self.time_travel_max_events
            ) as past:
                result = semantic.execute(past.query, q, tenant, now, self.reporting_currency, bespoke)
        else:
            self._needs_flush([cat[m].table for m in q.metrics])
            result = semantic.execute(
                self.read_models.query, q, tenant, now, self.reporting_currency, bespoke
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
            "answer_text": _answer(q, result),
            "interpretation": q.as_dict(),
        }

    def _run_sql(self, tenant: str, sql: str, limit: int, cursor: str | None) -> dict[str, Any]:
        g = guard(sql, self.read_models.database)
        self._needs_flush(g.tables)
        try:
            page = run_page(self.read_models.query, g, tenant, limit, cursor)
        except GuardError:  # e.g. a cursor of another query or tenant
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
            "answer_text": None,
        }

    def explain(self, mode: str, body: dict[str, Any]) -> dict[str, Any]:
        """The SQL a request would run and the tables it reads, without running it."""
        database = self.read_models.database
        asked = {"question": body.get("question") if mode == "question" else None, "engine": ENGINES[mode]}
        if mode == "sql":
            g = guard(body["sql"], database)
            return {
                "mode": mode,
                **asked,
                "sql": g.sql,
                "tables": list(g.tables),
                "tables_accessed": list(g.tables),
                "parameters": {"tenant": "<from your API key>"},
                "pagination": "keyset: ORDER BY keys (nulls last), then a row hash",
            }
        q = self.semantic_of(mode, body)
        compiled = semantic.compile_query(q, database)
        tables = sorted({t for c in compiled for t in c.tables})
        until = q.as_of or "now"  # as_of: over the tables folded from the event store as of then
        return {
            "mode": mode,
            **asked,
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
                        **({"since": f"{until} - {q.window}", "until": until} if q.window in WINDOWS else {}),
                    },
                    **({} if c.sql else {"computed_by": f"GET /v1/metrics/{c.metric}"}),
                }
                for c in compiled
            ],
            "tables": tables,
            "tables_accessed": tables,
        }

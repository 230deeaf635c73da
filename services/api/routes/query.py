"""``POST /v1/query`` (guarded SQL, a semantic query, or a plain-language question) and
``/v1/query/explain`` (readmodels/query/service.py).

Body (exactly one mode): ``{"sql": "SELECT ..."}``, ``{"metrics": [...], "dimensions": [...],
"filters": {...}, "window": "1h", "grain": "5m"}`` (optionally ``order_by``/``direction``/``top``,
``compare``, ``as_of``), or ``{"question": "top 5 products by units sold this week"}``; with
``limit`` (default 1000, max 10000) and ``cursor`` (the ``next_cursor`` of the previous page).
The tenant comes from the API key. A body without exactly one mode, or with a bad ``limit``, is 422;
anything that does not map or is not allowed answers 400 with a machine-readable code and, where it
helps, suggestions.

``answer`` is the page's rows (a list of row objects, as ``rows``): existing AgentFlow clients read it as an
object or a list of rows and reject a string (API.md). The plain sentence of a semantic answer is
``answer_text``.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from anyio import to_thread
from litestar import post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from readmodels.query.semantic import SemanticError
from readmodels.query.service import MODES, QueryService
from readmodels.query.sql_guard import GuardError
from readmodels.query.sql_pages import DEFAULT_LIMIT, MAX_LIMIT
from services.api.consistency import ReadAfter
from services.api.dependencies import READ
from services.api.errors import ApiError
from services.api.openapi import errors

Unset = msgspec.UnsetType
UNSET = msgspec.UNSET


def _doc(text: str) -> msgspec.Meta:
    return msgspec.Meta(description=text)


class QueryRequest(msgspec.Struct):
    """Exactly one of ``sql``, ``metrics`` or ``question`` (explain reads no ``limit``/``cursor``).
    Loosely typed: the query service answers what does not map with its own codes and suggestions
    (400)."""

    sql: Annotated[Any, _doc("guarded SQL over the read-model tables (SELECT only; tenant-scoped)")] = UNSET
    question: Annotated[Any, _doc("a plain-language question, e.g. 'revenue by channel today'")] = UNSET
    metrics: Annotated[Any, _doc("metric names (a list, or one name)")] = UNSET
    dimensions: Annotated[Any, _doc("dimensions to group by, e.g. ['channel']")] = UNSET
    filters: Annotated[Any, _doc("dimension -> value")] = UNSET
    window: Annotated[Any, _doc("5m, 15m, 1h, 6h, 24h, 7d or now (default 1h)")] = UNSET
    grain: Annotated[Any, _doc("a time bucket (e.g. 5m) for a series")] = UNSET
    order_by: Annotated[Any, _doc("rank the rows by this metric's value")] = UNSET
    direction: Annotated[Any, _doc("desc (default) or asc, with order_by")] = UNSET
    top: Annotated[Any, _doc("keep the first N rows (after order_by)")] = UNSET
    compare: Annotated[Any, _doc("also the same window this much earlier, e.g. 24h")] = UNSET
    as_of: Annotated[Any, _doc("ISO-8601 instant the window ends at (the read model as it stood)")] = UNSET
    limit: Annotated[Any, _doc(f"rows per page, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})")] = UNSET
    cursor: Annotated[Any, _doc("the next_cursor of the previous page")] = UNSET
    context: Annotated[Any, _doc("accepted and ignored (existing clients send it)")] = UNSET

    def fields(self) -> dict[str, Any]:
        """The fields the body set, as the query service reads them."""
        return {f: v for f in self.__struct_fields__ if (v := getattr(self, f)) is not UNSET}


class QueryMetadata(msgspec.Struct):
    rows_returned: int
    execution_time_ms: float
    data_freshness_seconds: float


class QueryMeta(msgspec.Struct):
    as_of: str
    is_historical: bool
    freshness_seconds: float
    as_of_position: int
    sql: str
    tables: list[str]
    mode: str
    execution_time_ms: float
    stale: bool | Unset = UNSET


class QueryResult(msgspec.Struct):
    mode: str
    columns: list[str]
    rows: list[dict[str, Any]]
    next_cursor: str | None
    has_more: bool
    total_count: int | None
    page_size: int
    sql: str
    tables: list[str]
    answer: list[dict[str, Any]]  # the page's rows, as existing clients read the answer (API.md)
    answer_text: str | None  # a sentence for semantic queries and questions; null for SQL
    meta: QueryMeta
    metadata: QueryMetadata
    units: dict[str, str] | Unset = UNSET  # semantic: each metric's unit
    currency: str | None | Unset = UNSET  # semantic: the reported currency of money metrics
    interpretation: dict[str, Any] | Unset = UNSET  # semantic: the query as understood


class ExplainedQuery(msgspec.Struct):
    metric: str
    sql: str | None  # null for a metric computed without SQL here (computed_by says how)
    tables: list[str]
    parameters: dict[str, Any]
    computed_by: str | Unset = UNSET


class QueryExplanation(msgspec.Struct):
    mode: str
    question: str | None  # the question as asked; null for sql and metrics requests
    engine: str  # what turned the request into SQL: rule_based, semantic_layer or guarded_sql
    sql: str
    tables: list[str]
    tables_accessed: list[str]  # the same tables, as existing clients read them
    interpretation: dict[str, Any] | Unset = UNSET  # semantic: the query as understood
    queries: list[ExplainedQuery] | Unset = UNSET  # semantic: one per metric
    parameters: dict[str, Any] | Unset = UNSET  # sql: the bound parameters
    pagination: str | Unset = UNSET  # sql: how pages are cut


def _mode(body: dict[str, Any]) -> str:
    given = [m for m in MODES if m in body]
    if len(given) != 1:
        message = "the body needs exactly one of sql, question or metrics"
        raise ApiError(422, "invalid_query", message, {"modes": list(MODES)})
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


def _refused(exc: GuardError | SemanticError) -> ApiError:
    return ApiError(400, exc.code, exc.message, exc.details)


@post("/v1/query", opt=READ, status_code=200, responses=errors(400, 401, 413, 422, 503))
async def query(
    tenant: NamedDependency[str],
    queries: NamedDependency[QueryService],
    read_after: NamedDependency[ReadAfter],
    data: JSONBody[QueryRequest],
) -> QueryResult:
    """One page of the answer; ``next_cursor`` asks for the next."""
    body = data.fields()
    mode = _mode(body)
    limit, cursor = _limit(body), _cursor(body)
    fresh = await read_after.wait()
    try:
        out = await to_thread.run_sync(queries.run, tenant, mode, body, limit, cursor, fresh)
    except (GuardError, SemanticError) as exc:
        raise _refused(exc) from None
    return msgspec.convert(out, QueryResult)


@post(
    "/v1/query/explain", opt=READ, status_code=200, responses=errors(400, 401, 413, 422), sync_to_thread=False
)
def explain(
    tenant: NamedDependency[str], queries: NamedDependency[QueryService], data: JSONBody[QueryRequest]
) -> QueryExplanation:
    """The SQL a query would run and the tables it reads, without running it (``mode``, ``question``,
    ``engine``, ``sql``, ``tables``/``tables_accessed``; semantic queries also ``interpretation`` and one
    entry per metric in ``queries``)."""
    body = data.fields()
    mode = _mode(body)
    try:
        return msgspec.convert(queries.explain(mode, body), QueryExplanation)
    except (GuardError, SemanticError) as exc:
        raise _refused(exc) from None


QUERY_ROUTES = [query, explain]

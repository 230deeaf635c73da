"""The read tools: one per read of the API, each a thin call through the SDK whose answer is wrapped with
its freshness (services/mcp/results.py); descriptions from the catalog (services/mcp/describe.py).
The annotations are evaluated at definition (no ``from __future__ import annotations``): the tool
schemas are built from them, and some name the catalog of the enclosing call."""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from urllib.parse import quote

from agentflow_client import AgentFlowError, AsyncClient, Call, Catalog
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from services.mcp import describe
from services.mcp.errors import tool_error
from services.mcp.results import answer

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                            open_world_hint=False)  # fmt: skip

Window = Annotated[str | None, Field(description="5m, 15m, 1h, 6h, 24h, 7d (now for gauges); default: the "
                                     "metric's first window")]  # fmt: skip
AsOf = Annotated[str | None, Field(description="ISO-8601 instant in the past: the answer as it stood then")]
MinPosition = Annotated[int | None, Field(
    description="wait until the read model applied this event-store position (a command's position: read "
    "your own write)")]  # fmt: skip
Currency = Annotated[str | None, Field(description="ISO 4217 currency of a money metric, e.g. EUR")]
Channel = Annotated[str | None, Field(description="only this sales channel (web, app, ...)")]
Category = Annotated[str | None, Field(description="only this product category")]
Product = Annotated[str | None, Field(description="only this product id")]
Method = Annotated[str | None, Field(description="only this payment method")]
Limit = Annotated[int | None, Field(description="rows per page", ge=1, le=1000)]


async def _read(client: AsyncClient, pending: Awaitable[Any]) -> dict[str, Any]:
    try:
        return await answer(client, await pending)
    except AgentFlowError as exc:
        raise tool_error(exc) from exc


def add_read_tools(server: MCPServer, client: AsyncClient, catalog: Catalog) -> list[str]:
    """Registers the read tools; their names."""

    async def get_metric(
        name: Annotated[str, Field(description="a metric of the catalog, e.g. revenue")],
        window: Window = None, currency: Currency = None, channel: Channel = None, category: Category = None,
        product: Product = None, method: Method = None, as_of: AsOf = None, min_position: MinPosition = None,
    ) -> dict[str, Any]:  # fmt: skip
        return await _read(client, client.metric(
            name, window, currency=currency, channel=channel, category=category, product=product,
            method=method, as_of=as_of, min_position=min_position))  # fmt: skip

    async def metric_series(
        name: Annotated[str, Field(description="a metric with series grains, e.g. revenue")],
        window: Window = None,
        grain: Annotated[str | None, Field(description="bucket size: 1m, 5m, 1h, 1d")] = None,
        currency: Currency = None, channel: Channel = None, category: Category = None,
        product: Product = None, method: Method = None, as_of: AsOf = None, min_position: MinPosition = None,
    ) -> dict[str, Any]:  # fmt: skip
        params = {"window": window, "grain": grain, "currency": currency, "channel": channel,
                  "category": category, "product": product, "method": method, "as_of": as_of,
                  "min_position": min_position}  # fmt: skip
        call = Call("GET", f"/v1/metrics/{_seg(name)}/series", dict,
                    {k: v for k, v in params.items() if v is not None}, consistent=True)  # fmt: skip
        return await _read(client, client.run(call))

    async def get_entity(
        entity_type: Annotated[str, Field(description=f"one of {', '.join(sorted(catalog.entities))}")],
        entity_id: Annotated[str, Field(description="e.g. ORD-20260101-0001, USR-00001, PROD-001")],
        as_of: AsOf = None, min_position: MinPosition = None,
    ) -> dict[str, Any]:  # fmt: skip
        pending = client.entity(entity_type, entity_id, as_of=as_of, min_position=min_position)
        return await _read(client, pending)

    async def order_timeline(
        order_id: Annotated[str, Field(description="e.g. ORD-20260101-0001")], as_of: AsOf = None
    ) -> dict[str, Any]:
        return await _read(client, client.timeline(order_id, "order", as_of=as_of))

    async def query(
        question: Annotated[str | None, Field(description="a question in plain language")] = None,
        metrics: Annotated[list[str] | None, Field(description="semantic: metrics of the catalog")] = None,
        dimensions: Annotated[list[str] | None, Field(description="semantic: group by these")] = None,
        window: Window = None,
        filters: Annotated[dict[str, Any] | None, Field(description="semantic: dimension -> value")] = None,
        grain: Annotated[str | None, Field(description="semantic: a time bucket, e.g. 1h")] = None,
        limit: Limit = None,
        cursor: Annotated[str | None, Field(description="next_cursor of the previous page")] = None,
        min_position: MinPosition = None,
    ) -> dict[str, Any]:  # fmt: skip
        _one_of(question, metrics)
        return await _read(client, client.query(
            question, metrics=metrics, dimensions=dimensions, window=window, filters=filters, grain=grain,
            limit=limit, cursor=cursor, min_position=min_position))  # fmt: skip

    async def explain(
        question: Annotated[str | None, Field(description="a question in plain language")] = None,
        metrics: Annotated[list[str] | None, Field(description="semantic: metrics of the catalog")] = None,
        dimensions: Annotated[list[str] | None, Field(description="semantic: group by these")] = None,
        window: Window = None,
        filters: Annotated[dict[str, Any] | None, Field(description="semantic: dimension -> value")] = None,
        grain: Annotated[str | None, Field(description="semantic: a time bucket, e.g. 1h")] = None,
    ) -> dict[str, Any]:  # fmt: skip
        _one_of(question, metrics)
        body = {"question": question, "metrics": metrics, "dimensions": dimensions, "window": window,
                "filters": filters, "grain": grain}  # fmt: skip
        call = Call("POST", "/v1/query/explain", dict, body={k: v for k, v in body.items() if v is not None})
        return await _read(client, client.run(call))

    async def search(
        q: Annotated[str, Field(description="words to find")], limit: Limit = None,
        entity_types: Annotated[list[str] | None, Field(description="only these entity types")] = None,
        min_position: MinPosition = None,
    ) -> dict[str, Any]:  # fmt: skip
        return await _read(client, client.search(q, limit=limit, entity_types=entity_types,
                                                 min_position=min_position))  # fmt: skip

    async def catalog_tool() -> dict[str, Any]:
        return await _read(client, client.catalog())

    async def lineage(
        entity_type: Annotated[str, Field(description="order, user, product, session or payment")],
        entity_id: Annotated[str, Field(description="the entity's id")],
        min_position: MinPosition = None,
    ) -> dict[str, Any]:
        params = {"min_position": min_position} if min_position is not None else {}
        path = f"/v1/lineage/{_seg(entity_type)}/{_seg(entity_id)}"
        call = Call("GET", path, dict, params, consistent=True)
        return await _read(client, client.run(call))

    tools: list[tuple[Callable[..., Any], str, str]] = [
        (get_metric, "get_metric", describe.get_metric(catalog)),
        (metric_series, "metric_series", describe.metric_series(catalog)),
        (get_entity, "get_entity", describe.get_entity(catalog)),
        (order_timeline, "order_timeline", describe.order_timeline(catalog)),
        (query, "query", describe.query(catalog)),
        (explain, "explain", describe.explain(catalog)),
        (search, "search", describe.search(catalog)),
        (catalog_tool, "catalog", describe.CATALOG),
        (lineage, "lineage", describe.LINEAGE),
    ]
    for fn, name, description in tools:
        server.add_tool(fn, name=name, description=description, annotations=READ_ONLY)
    return [name for _, name, _ in tools]


def _one_of(question: str | None, metrics: list[str] | None) -> None:
    if (question is None) == (metrics is None):
        raise ToolError("pass either question or metrics")


def _seg(value: str) -> str:
    return quote(value, safe="")

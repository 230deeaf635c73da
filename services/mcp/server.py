"""Build and run the MCP server: ask the API who the key is (``GET /v1/whoami``) and what it serves
(``GET /v1/catalog``), register the read tools, the commands when the key has the write scope, and the
resources, then serve over stdio or streamable HTTP (``/mcp``; every request must present the same API key
as ``Authorization: Bearer <key>`` or ``X-API-Key``)."""

from __future__ import annotations

import hmac
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from agentflow_client import AgentFlowError, ApiError, AsyncClient, Catalog, RetryPolicy, WhoAmI
from mcp.server.mcpserver import MCPServer

from services.mcp.commands import add_command_tools
from services.mcp.resources import add_resources
from services.mcp.tools import add_read_tools

# a read with min_position answers 503 position_not_yet_applied (Retry-After: 1) until it is applied
PATIENT = RetryPolicy(max_retries=30, max_backoff=2.0)
INSTRUCTIONS = (
    "AgentFlow: live business metrics (revenue, orders, conversion...) and entities (orders, users, "
    "products, sessions) from an event-sourced store. Every tool result is {data, freshness}: freshness "
    "names the event-store position the answer reflects and how many seconds the read model lagged. A "
    "command's answer carries the position it wrote; pass it as min_position to a read to see the write."
)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]


def build_server(client: AsyncClient, who: WhoAmI, catalog: Catalog) -> MCPServer:
    server = MCPServer("agentflow", instructions=INSTRUCTIONS, version="0.1.0", log_level="WARNING")
    add_read_tools(server, client, catalog)
    if "write" in who.grants:
        add_command_tools(server, client, catalog)
    add_resources(server, client)
    return server


def requires_key(app: Asgi, key: str) -> Asgi:
    """HTTP requests without the key (Bearer or X-API-Key) answer 401; lifespan events pass through."""
    expected = key.encode()

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            bearer = headers.get(b"authorization", b"")
            given = bearer[7:] if bearer.lower().startswith(b"bearer ") else headers.get(b"x-api-key", b"")
            if not hmac.compare_digest(given, expected):
                body = b'{"error": "unauthorized: send the API key as Authorization: Bearer <key>"}'
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"www-authenticate", b"Bearer")]})  # fmt: skip
                await send({"type": "http.response.body", "body": body})
                return
        await app(scope, receive, send)

    return guarded


async def serve(url: str, api_key: str, transport: str = "stdio", host: str = "127.0.0.1", port: int = 8765
                ) -> None:  # fmt: skip
    async with AsyncClient(url, api_key, retry=PATIENT) as client:
        who = await client.whoami()
        catalog = await client.catalog()
        server = build_server(client, who, catalog)
        if transport == "stdio":
            await server.run_stdio_async()
            return
        import uvicorn

        app = requires_key(server.streamable_http_app(host=host), api_key)
        # log_config=None: uvicorn's lines go through the process's structured logging (services/logs.py)
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", log_config=None)
        await uvicorn.Server(config).serve()


def run(url: str, api_key: str, transport: str, host: str, port: int) -> int:
    import anyio

    try:
        anyio.run(serve, url, api_key, transport, host, port)
    except ApiError as exc:
        print(f"error: {exc.status} {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    except AgentFlowError as exc:
        print(f"error: cannot reach {url}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0

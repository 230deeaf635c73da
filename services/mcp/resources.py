"""Resources: the catalog (``agentflow://catalog``), the contracts' list (``agentflow://contracts``) and
each contract's current document (``agentflow://contracts/{name}``), read live from the API as JSON."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import msgspec
from agentflow_client import AgentFlowError, AsyncClient, Call
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError

JSON = "application/json"


async def _get(client: AsyncClient, call: Call[Any]) -> str:
    try:
        return msgspec.json.encode(msgspec.to_builtins(await client.run(call))).decode()
    except AgentFlowError as exc:
        raise ResourceError(str(exc)) from exc


def add_resources(server: MCPServer, client: AsyncClient) -> list[str]:
    @server.resource("agentflow://catalog", name="catalog", mime_type=JSON,
                     description="The metrics and entities served, from their current contract versions")
    async def catalog() -> str:  # fmt: skip
        return await _get(client, Call("GET", "/v1/catalog", dict))

    @server.resource("agentflow://contracts", name="contracts", mime_type=JSON,
                     description="Every metric and entity contract: current version, status, versions")
    async def contracts() -> str:  # fmt: skip
        return await _get(client, Call("GET", "/v1/contracts", dict))

    @server.resource("agentflow://contracts/{name}", name="contract", mime_type=JSON,
                     description="One contract's current document: fields, formula, windows, dimensions")
    async def contract(name: str) -> str:  # fmt: skip
        return await _get(client, Call("GET", f"/v1/contracts/{quote(name, safe='')}", dict))

    return ["agentflow://catalog", "agentflow://contracts", "agentflow://contracts/{name}"]

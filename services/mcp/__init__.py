"""``agentflow mcp``: an MCP server (the official ``mcp`` SDK) over stdio or streamable HTTP that is a
client of the AgentFlow HTTP API (our SDK, ``agentflow_client``), so it serves any deployment.

``describe`` turns the catalog (the contracts as served) into tool descriptions, ``tools`` registers the
read tools and -- for a key with the write scope -- the commands, ``resources`` the catalog and the
contracts, ``server`` builds and runs it (``agentflow mcp [--url] [--api-key] [--transport]``)."""

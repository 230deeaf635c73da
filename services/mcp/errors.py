"""API errors as MCP tool errors: the status, the machine-readable code, the message and details."""

from __future__ import annotations

import json

from agentflow_client import AgentFlowError, ApiError
from mcp.server.mcpserver.exceptions import ToolError


def tool_error(exc: AgentFlowError) -> ToolError:
    if isinstance(exc, ApiError):
        details = f" details: {json.dumps(exc.details)}" if exc.details is not None else ""
        return ToolError(f"{exc.status} {exc.code}: {exc.message}{details}")
    return ToolError(f"the AgentFlow API did not answer: {exc}")

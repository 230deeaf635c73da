"""``agentflow mcp [--url URL] [--api-key KEY] [--transport stdio|http] [--host H] [--port N]``: the URL and
key as the other client commands find them (flags, AGENTFLOW_URL/AGENTFLOW_API_KEY, the config file)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_mcp_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("mcp", help="serve the API to MCP clients (stdio, or streamable HTTP at /mcp)")
    p.add_argument("--url", default=None, help="the API (default: $AGENTFLOW_URL, the config file)")
    p.add_argument("--api-key", default=None, help="default: $AGENTFLOW_API_KEY, the config file")
    p.add_argument("--config", type=Path, default=None, help="TOML with url and api_key")
    p.add_argument("--transport", choices=("stdio", "http"), default="stdio")
    p.add_argument("--host", default="127.0.0.1", help="http: the address to listen on")
    p.add_argument("--port", type=int, default=8765, help="http: the port to listen on")


def run_mcp_command(args: argparse.Namespace) -> int:
    from services.config import client_settings_from_env

    try:
        target = client_settings_from_env(args.url, args.api_key, config_file=args.config)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not target.api_key:
        print("error: no API key (pass --api-key, set AGENTFLOW_API_KEY or a config file)", file=sys.stderr)
        return 2
    from services.mcp.server import run

    return run(target.url, target.api_key, args.transport, args.host, args.port)

"""Every tool result is ``{"data": <the API's answer>, "freshness": {...}}``: the event-store position
the answer reflects (``as_of_position``; a command's: the position it wrote, to pass on as
``min_position``), how many seconds its read model lagged (``freshness_seconds``), ``as_of`` and
``is_historical`` where the answer says so, and ``source``: the answer itself, or -- for an answer that
carries no read-model state (catalog, explain, a timeline's lag) -- the tenant's changelog read
alongside it."""

from __future__ import annotations

from typing import Any

import msgspec
from agentflow_client import AgentFlowError, ApiError, AsyncClient, Call

from services.mcp.errors import tool_error


def plain(answer: Any) -> Any:
    return msgspec.to_builtins(answer)


def freshness_of(answer: dict[str, Any]) -> dict[str, Any]:
    meta = answer.get("meta") if isinstance(answer.get("meta"), dict) else {}
    assert isinstance(meta, dict)
    out: dict[str, Any] = {
        "as_of_position": meta.get("as_of_position"),
        "freshness_seconds": meta.get("freshness_seconds", answer.get("freshness_seconds")),
        "source": "answer",
    }
    for field in ("as_of", "is_historical", "stale"):
        if meta.get(field) is not None:
            out[field] = meta[field]
    return out


async def read_model_state(client: AsyncClient) -> dict[str, Any]:
    """The tenant's applied position and lag right now (``GET /v1/changelog?limit=1``'s meta)."""
    page = await client.run(Call("GET", "/v1/changelog", dict, {"limit": 1}))
    meta = page.get("meta") or {}
    return {"as_of_position": meta.get("as_of_position"), "freshness_seconds": meta.get("freshness_seconds")}


async def answer(client: AsyncClient, result: Any) -> dict[str, Any]:
    """The envelope of a read: its own freshness, completed from the changelog where it lacks some."""
    data = plain(result)
    fresh: dict[str, Any] = (
        freshness_of(data) if isinstance(data, dict) else {"as_of_position": None, "freshness_seconds": None}
    )
    if fresh.get("as_of_position") is None or fresh.get("freshness_seconds") is None:
        try:
            state = await read_model_state(client)
        except (ApiError, AgentFlowError) as exc:
            raise tool_error(exc) from exc
        missing = {k: v for k, v in state.items() if fresh.get(k) is None}
        fresh.update(missing)
        fresh["source"] = "answer+changelog" if len(missing) < 2 else "changelog"
    return {"data": data, "freshness": fresh}


def acknowledged(ack: Any) -> dict[str, Any]:
    """The envelope of a command: the position it wrote (read it back with ``min_position``)."""
    data = plain(ack)
    return {"data": data, "freshness": {"as_of_position": data["position"], "freshness_seconds": 0.0,
                                        "source": "command: pass as_of_position as min_position to read it"}}

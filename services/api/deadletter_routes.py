"""``/v1/deadletter``: events a pipeline stage rejected -- list, stats, get, replay, dismiss
(tenant-scoped). Replay semantics: services/replay.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from anyio import to_thread
from litestar import Request, Response, get, post
from litestar.handlers import HTTPRouteHandler

from connectors.dead_letters import PIPELINES, STATUSES, DeadLetterFilter
from services.api.context import correlation_id, json_body, json_response, runtime_of, tenant_of
from services.api.errors import ApiError
from services.replay import (
    DeadLetterNotFound,
    DeadLetterReplayer,
    ReplayConflict,
    ReplayRejected,
)
from services.runtime import Runtime

MAX_LIST = 500


def _replayer(runtime: Runtime) -> DeadLetterReplayer:
    cdc = runtime.legacy.replay_letter if runtime.legacy is not None else None
    return DeadLetterReplayer(runtime.engine, runtime.store, runtime.dead_letters, cdc=cdc)


def _choice(q: Any, name: str, allowed: tuple[str, ...] | None) -> str | None:
    value = q.get(name)
    if not value:
        return None
    if allowed is not None and value not in allowed:
        raise ApiError(422, "validation_failed", f"{name} must be one of {list(allowed)}",
                       [{"field": name, "message": f"unknown {name} {value!r}"}])  # fmt: skip
    return str(value)


def _filters(request: Request[Any, Any, Any]) -> DeadLetterFilter:
    q = request.query_params
    since = None
    if q.get("since"):
        try:
            since = datetime.fromisoformat(str(q["since"]).replace("Z", "+00:00"))
        except ValueError as exc:
            raise ApiError(422, "validation_failed", "since must be an ISO-8601 timestamp",
                           [{"field": "since", "message": str(exc)}]) from exc  # fmt: skip
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
    return DeadLetterFilter(
        status=_choice(q, "status", STATUSES),
        stage=_choice(q, "stage", None),  # stages are the pipelines' own names; any string filters
        pipeline=_choice(q, "pipeline", PIPELINES),
        event_type=_choice(q, "event_type", None),
        since=since,
    )


def _letter_id(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(404, "not_found", f"dead letter {raw} not found") from None
    if value <= 0:
        raise ApiError(404, "not_found", f"dead letter {raw} not found")
    return value


@get("/v1/deadletter", name="deadletter.list")
async def list_dead_letters(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Newest first. Filters: status, stage, pipeline, event_type, since; ``limit``; ``cursor`` (the
    ``next_cursor`` of the previous page)."""
    tenant = tenant_of(request)
    runtime = runtime_of(request)
    filters = _filters(request)
    q = request.query_params
    try:
        limit = min(MAX_LIST, max(1, int(q.get("limit") or 50)))
        cursor = int(q["cursor"]) if q.get("cursor") else None
    except ValueError as exc:
        raise ApiError(422, "validation_failed", "limit and cursor must be integers") from exc
    rows = await to_thread.run_sync(lambda: runtime.dead_letters.page(tenant, filters, limit, cursor))
    next_cursor = str(rows[-1].id) if len(rows) == limit else None
    return json_response({"data": [r.public() for r in rows], "count": len(rows), "next_cursor": next_cursor})


@get("/v1/deadletter/stats", name="deadletter.stats")
async def dead_letter_stats(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Counts by status, stage, pipeline, reason class and event type (the list's filters apply)."""
    tenant = tenant_of(request)
    runtime = runtime_of(request)
    filters = _filters(request)
    stats = await to_thread.run_sync(runtime.dead_letters.stats, tenant, filters)
    return json_response(stats)


@get("/v1/deadletter/{letter_id:str}", name="deadletter.get")
async def get_dead_letter(request: Request[Any, Any, Any], letter_id: str) -> Response[bytes]:
    tenant = tenant_of(request)
    runtime = runtime_of(request)
    letter = await to_thread.run_sync(runtime.dead_letters.get, tenant, _letter_id(letter_id))
    if letter is None:
        raise ApiError(404, "not_found", f"dead letter {letter_id} not found")
    return json_response(letter.public())


@post("/v1/deadletter/{letter_id:str}/replay", status_code=200, name="deadletter.replay")
async def replay_dead_letter(request: Request[Any, Any, Any], letter_id: str) -> Response[bytes]:
    """Append the event again -- with ``{"data": {...}}`` replacing its data -- after re-validating it;
    the deployment's normal pipeline projects it. 200 with the dead letter (``replayed``) and the new
    ``position`` (read with ``min_position`` to see it in the metrics); 422 if still invalid (status
    stays ``failed``); 409 if dismissed. Repeating it appends nothing (``appended: false``)."""
    tenant = tenant_of(request)
    runtime = runtime_of(request)
    lid = _letter_id(letter_id)
    body = await json_body(request)
    corrected = body.get("data")
    if corrected is not None and not isinstance(corrected, dict):
        raise ApiError(422, "validation_failed", "data must be an object (the corrected event data)",
                       [{"field": "data", "message": "expected an object"}])  # fmt: skip
    cid = correlation_id(request)
    actor = request.headers.get("x-actor") or f"api-key:{tenant}"
    replayer = _replayer(runtime)
    try:
        outcome = await to_thread.run_sync(lambda: replayer.replay(tenant, lid, corrected, cid, actor))
    except DeadLetterNotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from exc
    except ReplayRejected as exc:
        raise ApiError(422, "replay_invalid", str(exc),
                       [{"field": "data", "message": p} for p in exc.problems]) from exc  # fmt: skip
    except ReplayConflict as exc:
        raise ApiError(409, "invalid_status", str(exc), {"status": exc.status}) from exc
    return json_response({
        **outcome.letter.public(), "appended": outcome.appended, "position": outcome.position,
        "replay_event_id": outcome.event_id,
    })  # fmt: skip


@post("/v1/deadletter/{letter_id:str}/dismiss", status_code=200, name="deadletter.dismiss")
async def dismiss_dead_letter(request: Request[Any, Any, Any], letter_id: str) -> Response[bytes]:
    """failed -> dismissed (``{"note": "..."}`` optional); 409 when replayed or being replayed."""
    tenant = tenant_of(request)
    runtime = runtime_of(request)
    lid = _letter_id(letter_id)
    body = await json_body(request)
    note = body.get("note")
    if note is not None and not isinstance(note, str):
        raise ApiError(422, "validation_failed", "note must be a string")
    replayer = _replayer(runtime)
    try:
        letter = await to_thread.run_sync(replayer.dismiss, tenant, lid, note)
    except DeadLetterNotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from exc
    except ReplayConflict as exc:
        raise ApiError(409, "invalid_status", str(exc), {"status": exc.status}) from exc
    return json_response(letter.public())


DEADLETTER_ROUTES: list[HTTPRouteHandler] = [
    list_dead_letters,
    dead_letter_stats,
    get_dead_letter,
    replay_dead_letter,
    dismiss_dead_letter,
]

"""``/v1/admin``: operator actions -- read-model rebuilds (services/rebuild.py) and replaying a range
of events to a Kafka topic (services/replay.py).

A rebuild covers every tenant. Any valid API key may call these unless ``AGENTFLOW_ADMIN_API_KEYS``
(comma-separated keys) is set, in which case only those keys may.
"""

from __future__ import annotations

import secrets
from typing import Any

from anyio import to_thread
from litestar import Request, Response, get, post
from litestar.handlers import HTTPRouteHandler

from services.api.context import json_response, runtime_of, tenant_of
from services.api.errors import ApiError
from services.rebuild import NAMES, RebuildBusy
from services.replay import replay_range_to_kafka


def _admin(request: Request[Any, Any, Any]) -> None:
    tenant_of(request)  # a valid key at all (401 otherwise)
    allowed = request.app.state.container.settings.admin_api_keys
    if not allowed:
        return
    key = request.headers.get("x-api-key") or ""
    if not any(secrets.compare_digest(key, k) for k in allowed):
        raise ApiError(403, "forbidden", "this API key may not run admin actions")


def _names(name: str, available: list[str]) -> list[str]:
    if name == "all":
        return available
    if name not in NAMES:
        raise ApiError(404, "not_found", f"unknown read model {name!r}; expected one of {[*NAMES, 'all']}")
    if name not in available:
        raise ApiError(409, "not_projected_here", f"{name} is not projected by this process "
                       "(distributed deployment, or the lake is disabled)")  # fmt: skip
    return [name]


@post("/v1/admin/projections/{name:str}/rebuild", status_code=202, name="admin.rebuild")
async def start_rebuild(request: Request[Any, Any, Any], name: str) -> Response[bytes]:
    """Start rebuilding ``clickhouse``, ``iceberg`` or ``all`` from position 0; 202 with the progress
    (poll GET on the same path). 409 if one is already running."""
    _admin(request)
    rebuilds = runtime_of(request).rebuilds
    started = []
    for n in _names(name, rebuilds.available()):
        try:
            started.append(rebuilds.start(n).public())
        except RebuildBusy as exc:
            raise ApiError(409, "rebuild_running", str(exc)) from exc
    return json_response({"rebuilds": started}, 202)


@get("/v1/admin/projections/{name:str}/rebuild", name="admin.rebuild_progress")
async def rebuild_progress(request: Request[Any, Any, Any], name: str) -> Response[bytes]:
    """Progress of the latest rebuild(s): state, phase, position, target, percent, events/s."""
    _admin(request)
    rebuilds = runtime_of(request).rebuilds
    names = _names(name, rebuilds.available())
    found = [rebuilds.progress[n].public() for n in names if n in rebuilds.progress]
    if not found:
        raise ApiError(404, "not_found", f"no rebuild of {name} has run in this process")
    return json_response({"rebuilds": found})


@post("/v1/admin/replay/kafka", name="admin.replay_kafka")
async def replay_to_kafka(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Replay the caller's events in ``[from_position, to_position]`` to a Kafka topic (distributed
    deployment; default topic ``<prefix>.replay``) in the CDC format, keyed by stream id."""
    _admin(request)
    runtime = runtime_of(request)
    if not runtime.kafka_bootstrap:
        raise ApiError(409, "no_kafka", "this process is not connected to Kafka (embedded deployment)")
    body = await request.json() if await request.body() else {}
    try:
        first, last = int(body["from_position"]), int(body["to_position"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ApiError(422, "invalid_range", "from_position and to_position are required integers") from exc
    if first < 1 or last < first:
        raise ApiError(422, "invalid_range", "need 1 <= from_position <= to_position")
    topic = str(body.get("topic") or f"{runtime.topic_prefix}.replay")
    pipeline = {f"{runtime.topic_prefix}.{t}" for t in ("events", "serving", "deadletter")}
    if topic in pipeline or topic.startswith("__") or topic.startswith(f"{runtime.topic_prefix}.connect"):
        raise ApiError(
            422, "reserved_topic", f"{topic} is a pipeline topic; replay to a consumer's own topic"
        )
    result = await to_thread.run_sync(
        lambda: replay_range_to_kafka(
            runtime.store, runtime.kafka_bootstrap or "", topic, tenant_of(request), first, last
        )  # fmt: skip
    )
    return json_response(result)


ADMIN_ROUTES: list[HTTPRouteHandler] = [start_rebuild, rebuild_progress, replay_to_kafka]

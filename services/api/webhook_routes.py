"""``/v1/webhooks``: subscriptions, test deliveries and the delivery log (tenant-scoped).

Deliveries are made by the worker fleet (services/workers); this module only writes endpoints and
delivery rows and, when the fleet runs in this process, enqueues the drain at once (otherwise the
fleet's sweep picks the row up within about a second).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from anyio import to_thread
from litestar import Request, Response, delete, get, patch, post
from litestar.handlers import HTTPRouteHandler

from connectors.webhook_store import FINAL, OPEN, Endpoint, InvalidSubscription, normalize_predicates
from services.api.context import json_body, json_response, runtime_of, tenant_of
from services.api.errors import ApiError
from services.runtime import Runtime
from services.workers import signing, ssrf

MAX_LIST = 500


def _str_list(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ApiError(422, "validation_failed", f"{key} must be a list of non-empty strings",
                       [{"field": key, "message": "expected a list of strings"}])  # fmt: skip
    return value


async def _endpoint(runtime: Runtime, tenant: str, endpoint_id: str) -> Endpoint:
    ep = await to_thread.run_sync(runtime.webhook_store.get_endpoint, tenant, endpoint_id)
    if ep is None:
        raise ApiError(404, "not_found", f"webhook {endpoint_id} not found")
    return ep


def _kick(runtime: Runtime, endpoint_id: str) -> None:
    fleet = runtime.webhooks
    if fleet is not None:
        fleet.kick(endpoint_id)


@post("/v1/webhooks", status_code=201, name="webhooks.create")
async def create_webhook(request: Request[Any, Any, Any]) -> Response[bytes]:
    tenant = tenant_of(request)
    runtime = runtime_of(request)
    body = await json_body(request)
    url = body.get("url")
    if not isinstance(url, str) or not url.strip():
        raise ApiError(422, "validation_failed", "url is required",
                       [{"field": "url", "message": "required"}])  # fmt: skip
    try:
        await to_thread.run_sync(ssrf.resolve, url, runtime.webhook_settings.allow_private)
    except ssrf.BlockedDestination as exc:
        raise ApiError(422, "invalid_destination", str(exc), [{"field": "url", "message": str(exc)}]) from exc
    try:
        predicates = normalize_predicates(body.get("filters"))
    except InvalidSubscription as exc:
        raise ApiError(
            422, "validation_failed", str(exc), [{"field": "filters", "message": str(exc)}]
        ) from exc
    description = body.get("description") or ""
    if not isinstance(description, str):
        raise ApiError(422, "validation_failed", "description must be a string")
    event_types, entity_ids = _str_list(body, "event_types"), _str_list(body, "entity_ids")
    secret = signing.generate_secret()
    ep = await to_thread.run_sync(
        lambda: runtime.webhook_store.create_endpoint(
            tenant, url.strip(), secret, description, event_types, entity_ids, predicates
        )
    )
    return json_response({**ep.public(), "secret": secret}, 201, {"Location": f"/v1/webhooks/{ep.id}"})


@get("/v1/webhooks", name="webhooks.list")
async def list_webhooks(request: Request[Any, Any, Any]) -> Response[bytes]:
    tenant = tenant_of(request)
    eps = await to_thread.run_sync(runtime_of(request).webhook_store.list_endpoints, tenant)
    return json_response({"data": [e.public() for e in eps], "count": len(eps)})


@get("/v1/webhooks/{endpoint_id:str}", name="webhooks.get")
async def get_webhook(request: Request[Any, Any, Any], endpoint_id: str) -> Response[bytes]:
    ep = await _endpoint(runtime_of(request), tenant_of(request), endpoint_id)
    return json_response(ep.public())


@patch("/v1/webhooks/{endpoint_id:str}", name="webhooks.update")
async def update_webhook(request: Request[Any, Any, Any], endpoint_id: str) -> Response[bytes]:
    """``{"enabled": true}`` re-enables an endpoint disabled by 410 Gone (its held deliveries resume)."""
    tenant = tenant_of(request)
    runtime = runtime_of(request)
    body = await json_body(request)
    ep = await _endpoint(runtime, tenant, endpoint_id)
    enabled = body.get("enabled")
    if not isinstance(enabled, bool):
        raise ApiError(422, "validation_failed", "enabled (boolean) is required")
    status, reason = ("active", None) if enabled else ("disabled", "disabled by the API")
    await to_thread.run_sync(runtime.webhook_store.set_status, ep.id, status, reason)
    if enabled:
        _kick(runtime, ep.id)
    return json_response((await _endpoint(runtime, tenant, endpoint_id)).public())


@delete("/v1/webhooks/{endpoint_id:str}", status_code=204, name="webhooks.delete")
async def delete_webhook(request: Request[Any, Any, Any], endpoint_id: str) -> None:
    tenant = tenant_of(request)
    if not await to_thread.run_sync(runtime_of(request).webhook_store.delete_endpoint, tenant, endpoint_id):
        raise ApiError(404, "not_found", f"webhook {endpoint_id} not found")


@post("/v1/webhooks/{endpoint_id:str}/rotate-secret", status_code=200, name="webhooks.rotate_secret")
async def rotate_secret(request: Request[Any, Any, Any], endpoint_id: str) -> Response[bytes]:
    tenant = tenant_of(request)
    runtime = runtime_of(request)
    secret = signing.generate_secret()
    grace = runtime.webhook_settings.secret_grace_s
    ep = await to_thread.run_sync(runtime.webhook_store.rotate_secret, tenant, endpoint_id, secret, grace)
    if ep is None:
        raise ApiError(404, "not_found", f"webhook {endpoint_id} not found")
    return json_response({**ep.public(), "secret": secret, "previous_secrets_valid_for_seconds": grace})


@post("/v1/webhooks/{endpoint_id:str}/test", status_code=202, name="webhooks.test")
async def test_webhook(request: Request[Any, Any, Any], endpoint_id: str) -> Response[bytes]:
    """Queue a signed ``webhook.test`` delivery through the normal path (order, retries, log)."""
    tenant = tenant_of(request)
    runtime = runtime_of(request)
    ep = await _endpoint(runtime, tenant, endpoint_id)
    payload = {
        "type": "webhook.test", "id": str(uuid.uuid4()), "tenant_id": tenant, "endpoint_id": ep.id,
        "data": {"message": "test delivery from AgentFlow"}, "occurred_at": datetime.now(UTC).isoformat(),
    }  # fmt: skip
    d = await to_thread.run_sync(
        lambda: runtime.webhook_store.add_delivery(ep.id, tenant, payload, "test", "webhook.test")
    )
    if d is None:  # pragma: no cover - the endpoint was deleted meanwhile
        raise ApiError(404, "not_found", f"webhook {endpoint_id} not found")
    _kick(runtime, ep.id)
    return json_response({"delivery": d.public(), "payload": payload}, 202)


@get("/v1/webhooks/{endpoint_id:str}/deliveries", name="webhooks.deliveries")
async def list_deliveries(request: Request[Any, Any, Any], endpoint_id: str) -> Response[bytes]:
    """Newest first, each with its attempts. ``?status=`` filters, ``?before=<id>`` pages."""
    tenant = tenant_of(request)
    runtime = runtime_of(request)
    ep = await _endpoint(runtime, tenant, endpoint_id)
    q = request.query_params
    status = q.get("status")
    if status and status not in (*OPEN, *FINAL):
        raise ApiError(422, "validation_failed", f"status must be one of {[*OPEN, *FINAL]}")
    try:
        limit = min(MAX_LIST, max(1, int(q.get("limit") or 50)))
        before = int(q["before"]) if q.get("before") else None
    except ValueError as exc:
        raise ApiError(422, "validation_failed", "limit and before must be integers") from exc
    rows = await to_thread.run_sync(
        lambda: runtime.webhook_store.list_deliveries(tenant, ep.id, limit, status, before)
    )
    next_before = rows[-1].id if len(rows) == limit else None
    return json_response({"data": [d.public() for d in rows], "count": len(rows), "next_before": next_before})


@post("/v1/webhooks/{endpoint_id:str}/replay", status_code=202, name="webhooks.replay")
async def replay_to_webhook(request: Request[Any, Any, Any], endpoint_id: str) -> Response[bytes]:
    """``{"from_position", "to_position", "replay_id"?}``: queue the endpoint's matching events in that
    position range (inclusive) again, as ``replay`` deliveries through the normal path (services/replay.py).
    The same ``replay_id`` queues nothing twice."""
    from services.replay import replay_range_to_endpoint

    tenant = tenant_of(request)
    runtime = runtime_of(request)
    ep = await _endpoint(runtime, tenant, endpoint_id)
    body = await json_body(request)
    lo, hi, rid = body.get("from_position"), body.get("to_position"), body.get("replay_id")
    if not (
        isinstance(lo, int) and isinstance(hi, int) and not isinstance(lo, bool)
        and not isinstance(hi, bool) and 1 <= lo <= hi
    ):  # fmt: skip
        raise ApiError(422, "validation_failed", "from_position and to_position must be integers, "
                       "1 <= from_position <= to_position")  # fmt: skip
    if rid is not None and (not isinstance(rid, str) or not rid or len(rid) > 100):
        raise ApiError(422, "validation_failed", "replay_id must be a non-empty string (<= 100 chars)")
    done = await to_thread.run_sync(
        lambda: replay_range_to_endpoint(runtime.store, runtime.webhook_store, ep, lo, hi, rid)
    )
    if done.created:
        _kick(runtime, ep.id)
    return json_response({
        "replay_id": done.replay_id, "endpoint_id": ep.id, "from_position": lo, "to_position": hi,
        "events_scanned": done.scanned, "events_matched": done.matched, "deliveries_created": done.created,
    }, 202)  # fmt: skip


WEBHOOK_ROUTES: list[HTTPRouteHandler] = [
    create_webhook,
    list_webhooks,
    get_webhook,
    update_webhook,
    delete_webhook,
    rotate_secret,
    test_webhook,
    list_deliveries,
    replay_to_webhook,
]

"""``/v1/webhooks``: subscriptions, test deliveries, the delivery log and range replays (tenant-scoped).

The use cases are readmodels/webhooks.py (WebhookSubscriptions); deliveries are made by the worker
fleet (services/webhooks), which this process's commands wake when it runs here (otherwise its sweep
finds the queued rows within about a second).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

import msgspec
from litestar import Response, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter, QueryParameter

from readmodels.webhooks import (
    OPEN,
    Delivery,
    Endpoint,
    InvalidWebhookRequest,
    WebhookNotFound,
    WebhookSubscriptions,
)
from services.api.blocking import in_thread
from services.api.dependencies import READ, WRITE
from services.api.errors import ApiError
from services.api.openapi import errors

EndpointId = Annotated[str, PathParameter(description="a webhook endpoint id (ep_...)")]
DeliveryStatus = Literal["pending", "delivering", "succeeded", "exhausted", "failed"]


# -- bodies ----------------------------------------------------------------------------------------


class WebhookCreate(msgspec.Struct):
    """A subscription: every event of the tenant, narrowed by event types, entity (stream) ids and
    predicates ``{field, op, value}`` on the event data (op: eq ne gt gte lt lte in exists, or
    ==, !=, >, >=, <, <=). Alert notifications go to endpoints subscribed to ``alert.*``."""

    url: str | None = None
    description: str | None = None
    event_types: list[str] | None = None
    entity_ids: list[str] | None = None
    filters: list[dict[str, Any]] | None = None


class WebhookUpdate(msgspec.Struct):
    enabled: bool | None = None  # true re-enables an endpoint disabled by 410 Gone


class WebhookReplayRequest(msgspec.Struct):
    from_position: int | None = None
    to_position: int | None = None
    replay_id: str | None = None  # the same id queues nothing twice


# -- responses -------------------------------------------------------------------------------------


class WebhookEndpoint(msgspec.Struct):
    id: str
    url: str
    description: str
    event_types: list[str]
    entity_ids: list[str]
    filters: list[dict[str, Any]]
    status: str  # active | disabled
    disabled_reason: str | None
    start_position: int  # events after this position are delivered
    created_at: str
    updated_at: str


class WebhookCreated(WebhookEndpoint):
    secret: str  # the signing secret (whsec_...), shown only here


class WebhookSecretRotated(WebhookEndpoint):
    secret: str
    previous_secrets_valid_for_seconds: float


class WebhookList(msgspec.Struct):
    data: list[WebhookEndpoint]
    count: int


class DeliveryAttempt(msgspec.Struct):
    attempt: int
    started_at: str
    latency_ms: float | None
    status_code: int | None
    outcome: str  # succeeded | failed | gone | timeout | error | blocked | interrupted
    error: str | None
    response_excerpt: str | None
    retry_at: str | None


class WebhookDelivery(msgspec.Struct):
    id: int
    webhook_id: str  # the webhook-id header
    endpoint_id: str
    kind: str  # event | replay | test | alert
    event_id: str | None
    position: int | None
    event_type: str
    status: str  # pending | delivering | succeeded | exhausted | failed
    attempts: int
    next_attempt_at: str | None
    last_status: int | None
    last_error: str | None
    created_at: str
    finished_at: str | None
    attempt_log: list[DeliveryAttempt]


class WebhookDeliveryList(msgspec.Struct):
    data: list[WebhookDelivery]
    count: int
    next_before: int | None  # pass as ?before= for the next (older) page


class WebhookTestQueued(msgspec.Struct):
    delivery: WebhookDelivery
    payload: dict[str, Any]


class WebhookReplayQueued(msgspec.Struct):
    replay_id: str
    endpoint_id: str
    from_position: int
    to_position: int
    events_scanned: int
    events_matched: int
    deliveries_created: int


def _endpoint_fields(ep: Endpoint) -> dict[str, Any]:
    return {
        "id": ep.id, "url": ep.url, "description": ep.description, "event_types": ep.event_types,
        "entity_ids": ep.entity_ids, "filters": ep.predicates, "status": ep.status,
        "disabled_reason": ep.disabled_reason, "start_position": ep.start_position,
        "created_at": ep.created_at.isoformat(), "updated_at": ep.updated_at.isoformat(),
    }  # fmt: skip


def endpoint_view(ep: Endpoint) -> WebhookEndpoint:
    return WebhookEndpoint(**_endpoint_fields(ep))


def delivery_view(d: Delivery) -> WebhookDelivery:
    return WebhookDelivery(
        id=d.id, webhook_id=d.message_id, endpoint_id=d.endpoint_id, kind=d.kind, event_id=d.event_id,
        position=d.position, event_type=d.event_type, status=d.status, attempts=d.attempts,
        next_attempt_at=d.next_attempt_at.isoformat() if d.next_attempt_at and d.status in OPEN else None,
        last_status=d.last_status, last_error=d.last_error, created_at=d.created_at.isoformat(),
        finished_at=d.finished_at.isoformat() if d.finished_at else None,
        attempt_log=[DeliveryAttempt(**a) for a in d.attempt_log],
    )  # fmt: skip


@contextmanager
def _refusals() -> Iterator[None]:
    """The use cases' refusals in the API's error shape."""
    try:
        yield
    except WebhookNotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from exc
    except InvalidWebhookRequest as exc:
        details = [{"field": exc.field, "message": exc.field_message}] if exc.field else None
        raise ApiError(422, exc.code, exc.message, details) from exc


# -- routes ----------------------------------------------------------------------------------------


@post("/v1/webhooks", opt=WRITE, status_code=201, responses=errors(401, 413, 422))
@in_thread
def create_webhook(
    tenant: NamedDependency[str],
    webhook_subscriptions: NamedDependency[WebhookSubscriptions],
    data: JSONBody[WebhookCreate],
) -> Response[WebhookCreated]:
    """Subscribe a URL (checked against SSRF: public addresses only unless the operator allows private
    ones). 201 with the signing secret, shown only here."""
    with _refusals():
        made = webhook_subscriptions.create(
            tenant, data.url, data.description, data.event_types, data.entity_ids, data.filters
        )
    body = WebhookCreated(**_endpoint_fields(made.endpoint), secret=made.secret)
    return Response(body, status_code=201, headers={"Location": f"/v1/webhooks/{made.endpoint.id}"})


@get("/v1/webhooks", opt=READ, responses=errors(401))
@in_thread
def list_webhooks(
    tenant: NamedDependency[str], webhook_subscriptions: NamedDependency[WebhookSubscriptions]
) -> WebhookList:
    eps = webhook_subscriptions.list(tenant)
    return WebhookList([endpoint_view(e) for e in eps], len(eps))


@get("/v1/webhooks/{endpoint_id:str}", opt=READ, responses=errors(401, 404))
@in_thread
def get_webhook(
    tenant: NamedDependency[str],
    webhook_subscriptions: NamedDependency[WebhookSubscriptions],
    endpoint_id: EndpointId,
) -> WebhookEndpoint:
    with _refusals():
        return endpoint_view(webhook_subscriptions.get(tenant, endpoint_id))


@patch("/v1/webhooks/{endpoint_id:str}", opt=WRITE, responses=errors(401, 404, 413, 422))
@in_thread
def update_webhook(
    tenant: NamedDependency[str],
    webhook_subscriptions: NamedDependency[WebhookSubscriptions],
    endpoint_id: EndpointId,
    data: JSONBody[WebhookUpdate | None] = None,
) -> WebhookEndpoint:
    """``{"enabled": true}`` re-enables an endpoint disabled by 410 Gone (its held deliveries resume)."""
    with _refusals():
        ep = webhook_subscriptions.set_enabled(tenant, endpoint_id, data.enabled if data else None)
    return endpoint_view(ep)


@delete("/v1/webhooks/{endpoint_id:str}", opt=WRITE, status_code=204, responses=errors(401, 404))
@in_thread
def delete_webhook(
    tenant: NamedDependency[str],
    webhook_subscriptions: NamedDependency[WebhookSubscriptions],
    endpoint_id: EndpointId,
) -> None:
    with _refusals():
        webhook_subscriptions.delete(tenant, endpoint_id)


@post(
    "/v1/webhooks/{endpoint_id:str}/rotate-secret", opt=WRITE, status_code=200, responses=errors(401, 404),
)  # fmt: skip
@in_thread
def rotate_secret(
    tenant: NamedDependency[str],
    webhook_subscriptions: NamedDependency[WebhookSubscriptions],
    endpoint_id: EndpointId,
) -> WebhookSecretRotated:
    """A new signing secret; the previous ones keep signing (one signature each) for the grace period."""
    with _refusals():
        done = webhook_subscriptions.rotate_secret(tenant, endpoint_id)
    return WebhookSecretRotated(
        **_endpoint_fields(done.endpoint), secret=done.secret, previous_secrets_valid_for_seconds=done.grace_s
    )


@post("/v1/webhooks/{endpoint_id:str}/test", opt=WRITE, status_code=202, responses=errors(401, 404))
@in_thread
def test_webhook(
    tenant: NamedDependency[str],
    webhook_subscriptions: NamedDependency[WebhookSubscriptions],
    endpoint_id: EndpointId,
) -> WebhookTestQueued:
    """Queue a signed ``webhook.test`` delivery through the normal path (order, retries, log)."""
    with _refusals():
        queued = webhook_subscriptions.send_test(tenant, endpoint_id)
    return WebhookTestQueued(delivery_view(queued.delivery), queued.payload)


@get("/v1/webhooks/{endpoint_id:str}/deliveries", opt=READ, responses=errors(401, 404, 422))
@in_thread
def list_deliveries(
    tenant: NamedDependency[str],
    webhook_subscriptions: NamedDependency[WebhookSubscriptions],
    endpoint_id: EndpointId,
    status: Annotated[
        DeliveryStatus | None, QueryParameter(description="only deliveries in this status")
    ] = None,
    limit: Annotated[int, QueryParameter(description="page size (1-500)")] = 50,
    before: Annotated[int | None, QueryParameter(description="the next_before of the previous page")] = None,
) -> WebhookDeliveryList:
    """Newest first, each with its attempts."""
    with _refusals():
        page = webhook_subscriptions.deliveries(tenant, endpoint_id, limit, status, before)
    rows = [delivery_view(d) for d in page.deliveries]
    return WebhookDeliveryList(rows, len(rows), page.next_before)


@post(
    "/v1/webhooks/{endpoint_id:str}/replay", opt=WRITE, status_code=202, responses=errors(401, 404, 413, 422),
)  # fmt: skip
@in_thread
def replay_to_webhook(
    tenant: NamedDependency[str],
    webhook_subscriptions: NamedDependency[WebhookSubscriptions],
    endpoint_id: EndpointId,
    data: JSONBody[WebhookReplayRequest | None] = None,
) -> WebhookReplayQueued:
    """Queue the endpoint's matching events in ``[from_position, to_position]`` again, as ``replay``
    deliveries through the normal path; the same ``replay_id`` queues nothing twice."""
    body = data or WebhookReplayRequest()
    with _refusals():
        done = webhook_subscriptions.replay(
            tenant, endpoint_id, body.from_position, body.to_position, body.replay_id
        )
    return WebhookReplayQueued(
        replay_id=done.replay_id, endpoint_id=done.endpoint_id, from_position=done.from_position,
        to_position=done.to_position, events_scanned=done.scanned, events_matched=done.matched,
        deliveries_created=done.created,
    )  # fmt: skip


WEBHOOK_ROUTES = [
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

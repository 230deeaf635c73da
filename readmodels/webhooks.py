"""Webhooks, the downstream policy: which events an endpoint receives (event types, entity ids and the
payload predicate language), the body it receives, the retry schedule -- pure code -- and the use cases
behind ``/v1/webhooks`` over the storage port below (connectors/webhook_store.py
implements them; connectors/webhook_delivery.py sends; services/webhooks runs the fleet).

Order: deliveries to one endpoint go out by ascending id; the relay writes event deliveries in position
order, so an endpoint never receives position N+1 before N is delivered or exhausted.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from domain.events import RecordedEvent
from readmodels.ports import EventLog

OPEN = ("pending", "delivering")
FINAL = ("succeeded", "exhausted", "failed")
STATUSES = (*OPEN, *FINAL)
MAX_PAGE = 500

# -- the predicate language: [{field, op, value}] over the event data --------------------------------

PREDICATE_OPS = {
    "eq": "eq", "==": "eq", "=": "eq", "ne": "ne", "!=": "ne",
    "gt": "gt", ">": "gt", "gte": "gte", ">=": "gte", "lt": "lt", "<": "lt", "lte": "lte", "<=": "lte",
    "in": "in", "exists": "exists",
}  # fmt: skip


class InvalidSubscription(ValueError):
    pass


def normalize_predicates(raw: Any) -> list[dict[str, Any]]:
    """``[{field, op, value}]`` with ``field`` a dotted path into the event data; raises on bad input."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidSubscription("filters must be a list of {field, op, value}")
    out = []
    for i, p in enumerate(raw):
        if not isinstance(p, dict) or not isinstance(p.get("field"), str) or not p["field"]:
            raise InvalidSubscription(f"filters[{i}] needs a non-empty string 'field'")
        op = PREDICATE_OPS.get(str(p.get("op", "eq")))
        if op is None:
            raise InvalidSubscription(f"filters[{i}].op must be one of {sorted(set(PREDICATE_OPS.values()))}")
        if op == "in" and not isinstance(p.get("value"), list):
            raise InvalidSubscription(f"filters[{i}]: 'in' needs a list value")
        if op in ("gt", "gte", "lt", "lte") and not isinstance(p.get("value"), int | float | str):
            raise InvalidSubscription(f"filters[{i}]: {op} needs a number or string value")
        if op != "exists" and "value" not in p:
            raise InvalidSubscription(f"filters[{i}] needs a 'value'")
        out.append({"field": p["field"], "op": op, "value": p.get("value")})
    return out


_MISSING = object()


def _lookup(data: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(data, dict) or part not in data:
            return _MISSING
        data = data[part]
    return data


def _compare(op: str, actual: Any, expected: Any) -> bool:
    if op == "exists":
        return actual is not _MISSING and actual is not None
    if actual is _MISSING:
        return False
    if op == "eq":
        return bool(actual == expected)
    if op == "ne":
        return bool(actual != expected)
    if op == "in":
        return actual in expected
    try:
        if isinstance(expected, str) or isinstance(actual, str):
            a, b = float(actual), float(expected)
        else:
            a, b = actual, expected
        if op == "gt":
            return bool(a > b)
        if op == "gte":
            return bool(a >= b)
        if op == "lt":
            return bool(a < b)
        return bool(a <= b)
    except (TypeError, ValueError):
        return False


# -- records -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """A subscription: where to send, what to send, with which secrets."""

    id: str
    tenant_id: str
    url: str
    description: str
    event_types: list[str]
    entity_ids: list[str]
    predicates: list[dict[str, Any]]
    secrets: list[dict[str, Any]] = field(repr=False)  # [{secret, expires_at}], plaintext: never logged
    status: str
    disabled_reason: str | None
    start_position: int
    created_at: datetime
    updated_at: datetime

    def matches(self, event: RecordedEvent) -> bool:
        if (
            self.status != "active"
            or event.tenant_id != self.tenant_id
            or event.position <= self.start_position
        ):
            return False
        if self.event_types and event.event_type not in self.event_types:
            return False
        if self.entity_ids and event.stream_id not in self.entity_ids:
            return False
        return all(
            _compare(p["op"], _lookup(event.data, p["field"]), p.get("value")) for p in self.predicates
        )

    def signing_secrets(self, now: datetime | None = None) -> list[str]:
        """The current secret first, then rotated-out ones still inside their grace period."""
        now = now or datetime.now(UTC)
        out = []
        for s in self.secrets:
            exp = s.get("expires_at")
            if exp is None or datetime.fromisoformat(exp) > now:
                out.append(str(s["secret"]))
        return out


@dataclass
class Delivery:
    """One message to one endpoint (the outbox row) with its attempts."""

    id: int
    message_id: str  # the webhook-id header
    endpoint_id: str
    kind: str  # event | replay | test | alert
    event_id: str | None
    position: int | None
    event_type: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None
    attempt_log: list[dict[str, Any]] = field(default_factory=list)


class WebhookStorePort(Protocol):
    """Endpoints and the delivery outbox (connectors/webhook_store.py)."""

    def create_endpoint(
        self, tenant_id: str, url: str, secret: str, description: str = "", event_types: Iterable[str] = (),
        entity_ids: Iterable[str] = (), predicates: list[dict[str, Any]] | None = None,
    ) -> Endpoint: ...  # fmt: skip

    def get_endpoint(self, tenant_id: str | None, endpoint_id: str) -> Endpoint | None: ...

    def list_endpoints(self, tenant_id: str) -> list[Endpoint]: ...

    def delete_endpoint(self, tenant_id: str, endpoint_id: str) -> bool: ...

    def set_status(self, endpoint_id: str, status: str, reason: str | None = None) -> None: ...

    def rotate_secret(
        self, tenant_id: str, endpoint_id: str, new_secret: str, grace_s: float
    ) -> Endpoint | None: ...

    def add_delivery(
        self, endpoint_id: str, tenant_id: str, payload: dict[str, Any] | str, kind: str, event_type: str,
        dedup_key: str | None = None,
    ) -> Delivery | None:  # fmt: skip
        """Queue one delivery (committed on return); None if the endpoint is gone or the key was used."""
        ...

    def list_deliveries(
        self, tenant_id: str, endpoint_id: str, limit: int = 50, status: str | None = None,
        before_id: int | None = None,
    ) -> list[Delivery]: ...  # fmt: skip

    def queue_deliveries(self, rows: list[dict[str, Any]]) -> set[str]:
        """Insert outbox rows (readmodels.webhooks.event_delivery), idempotent on (endpoint, dedup_key);
        the endpoint ids that got a new delivery."""
        ...

    def count_replayed(self, endpoint_id: str, replay_id: str) -> int:
        """Deliveries a range replay ``replay_id`` has created for the endpoint so far."""
        ...


def rotated_secrets(
    secrets: Sequence[dict[str, Any]], new_secret: str, grace_s: float, now: datetime
) -> list[dict[str, Any]]:
    """``new_secret`` becomes current; the others still valid keep signing for ``grace_s`` seconds
    (a secret already expiring keeps its own expiry)."""
    expires = (now + timedelta(seconds=grace_s)).isoformat()
    kept = [
        {"secret": s["secret"], "expires_at": s.get("expires_at") or expires}
        for s in secrets
        if s.get("expires_at") is None or datetime.fromisoformat(s["expires_at"]) > now
    ]
    return [{"secret": new_secret, "expires_at": None}, *kept]


# -- what is sent --------------------------------------------------------------------------------------


def event_body(event: RecordedEvent) -> str:
    """The webhook body: the event itself (not an internal row)."""
    return json.dumps(
        {
            "type": event.event_type,
            "id": str(event.event_id),
            "position": event.position,
            "tenant_id": event.tenant_id,
            "stream_type": event.stream_type,
            "stream_id": event.stream_id,
            "data": event.data,
            "occurred_at": event.occurred_at.isoformat(),
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


def event_delivery(endpoint_id: str, event: RecordedEvent, kind: str, dedup_key: str) -> dict[str, Any]:
    """The outbox row of one event to one endpoint (connectors.webhook_store.insert_deliveries)."""
    return {
        "tenant_id": event.tenant_id, "endpoint_id": endpoint_id, "kind": kind, "dedup_key": dedup_key,
        "event_id": str(event.event_id), "position": event.position, "event_type": event.event_type,
        "body": event_body(event),
    }  # fmt: skip


def relay_deliveries(events: Iterable[RecordedEvent], endpoints: Sequence[Endpoint]) -> list[dict[str, Any]]:
    """The deliveries the relay writes for ``events`` (in their order): one per matching endpoint, keyed
    by the event id (re-reading an event writes nothing twice)."""
    return [
        event_delivery(ep.id, e, "event", str(e.event_id))
        for e in events
        for ep in endpoints
        if ep.matches(e)
    ]


def retry_delay(
    schedule: Sequence[float], attempt: int, retry_after_s: float | None, max_retry_after_s: float
) -> float | None:
    """Seconds until the attempt after ``attempt`` (1-based), or None when it was the last one. A
    receiver's Retry-After (429/503) wins over the schedule, capped at ``max_retry_after_s``."""
    if attempt >= len(schedule):
        return None
    if retry_after_s is not None:
        return min(retry_after_s, max_retry_after_s)
    return schedule[attempt]


# -- event range -> one endpoint (replay) -----------------------------------------------------------


@dataclass(frozen=True)
class RangeReplay:
    replay_id: str
    endpoint_id: str
    from_position: int
    to_position: int
    scanned: int
    matched: int
    created: int  # new deliveries (a repeated replay_id creates none)


def replay_range_to_endpoint(
    events: EventLog,
    webhooks: WebhookStorePort,
    endpoint: Endpoint,
    from_position: int,
    to_position: int,
    replay_id: str | None = None,
    batch: int = 1000,
    on_progress: Callable[[int, int], None] | None = None,
) -> RangeReplay:
    """Queue the endpoint's matching events with ``from_position <= position <= to_position`` as new
    deliveries (kind ``replay``), through the normal delivery path (order, signing, retries, log).

    Matching is the relay's (event types, entity ids, predicates) minus ``start_position``: an operator
    may replay history older than the endpoint. Each delivery's dedup key is
    ``replay:<replay_id>:<event id>``, so retrying one replay request (same ``replay_id``) queues
    nothing twice, while a new replay re-sends (new webhook-ids)."""
    rid = replay_id or uuid.uuid4().hex
    matcher = replace(endpoint, start_position=0, status="active")
    after = from_position - 1
    scanned = matched = 0
    before = webhooks.count_replayed(endpoint.id, rid)
    while after < to_position:
        page = events.read_all(after, limit=batch, tenant_id=endpoint.tenant_id, max_position=to_position)
        if not page:
            break
        rows = [event_delivery(endpoint.id, e, "replay", f"replay:{rid}:{e.event_id}") for e in page
                if matcher.matches(e)]  # fmt: skip
        scanned += len(page)
        matched += len(rows)
        if rows:
            webhooks.queue_deliveries(rows)
        after = page[-1].position
        if on_progress is not None:
            on_progress(after, scanned)
    created = webhooks.count_replayed(endpoint.id, rid) - before
    return RangeReplay(rid, endpoint.id, from_position, to_position, scanned, matched, created)


# -- the use cases of /v1/webhooks --------------------------------------------------------------------


class WebhookNotFound(Exception):
    def __init__(self, endpoint_id: str) -> None:
        super().__init__(f"webhook {endpoint_id} not found")


class InvalidWebhookRequest(ValueError):
    """A refused request (HTTP 422): ``code`` is ``validation_failed`` or ``invalid_destination``;
    ``field``/``field_message`` name the offending field when there is one."""

    def __init__(
        self, message: str, code: str = "validation_failed", field: str | None = None,
        field_message: str | None = None,
    ) -> None:  # fmt: skip
        super().__init__(message)
        self.message = message
        self.code = code
        self.field = field
        self.field_message = field_message or message


@dataclass(frozen=True)
class CreatedEndpoint:
    endpoint: Endpoint
    secret: str  # shown once


@dataclass(frozen=True)
class RotatedSecret:
    endpoint: Endpoint
    secret: str
    grace_s: float


@dataclass(frozen=True)
class QueuedTest:
    delivery: Delivery
    payload: dict[str, Any]


@dataclass(frozen=True)
class DeliveryPage:
    deliveries: list[Delivery]
    next_before: int | None


def _strings(value: list[str] | None, name: str) -> list[str]:
    items = value or []
    if not all(isinstance(v, str) and v for v in items):
        raise InvalidWebhookRequest(
            f"{name} must be a list of non-empty strings",
            field=name,
            field_message="expected a list of strings",
        )
    return list(items)


class WebhookSubscriptions:
    """Endpoints, test deliveries, the delivery log and range replays of one tenant's webhooks.

    ``destination_problem(url)`` says why a URL may not be a destination (None: it may; the SSRF
    check of connectors/ssrf.py); ``new_secret()`` makes a signing secret; ``kick(endpoint_id)``
    enqueues a drain when this process runs the fleet (otherwise its sweep finds the work)."""

    def __init__(
        self,
        store: WebhookStorePort,
        events: EventLog,
        destination_problem: Callable[[str], str | None],
        new_secret: Callable[[], str],
        kick: Callable[[str], None],
        secret_grace_s: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.events = events
        self.destination_problem = destination_problem
        self.new_secret = new_secret
        self.kick = kick
        self.secret_grace_s = secret_grace_s
        self.clock = clock

    def create(
        self,
        tenant_id: str,
        url: str | None,
        description: str | None = None,
        event_types: list[str] | None = None,
        entity_ids: list[str] | None = None,
        filters: Any = None,
    ) -> CreatedEndpoint:
        if not isinstance(url, str) or not url.strip():
            raise InvalidWebhookRequest("url is required", field="url", field_message="required")
        problem = self.destination_problem(url)
        if problem is not None:
            raise InvalidWebhookRequest(problem, "invalid_destination", field="url")
        try:
            predicates = normalize_predicates(filters)
        except InvalidSubscription as exc:
            raise InvalidWebhookRequest(str(exc), field="filters") from exc
        types, ids = _strings(event_types, "event_types"), _strings(entity_ids, "entity_ids")
        secret = self.new_secret()
        ep = self.store.create_endpoint(
            tenant_id, url.strip(), secret, description or "", types, ids, predicates
        )
        return CreatedEndpoint(ep, secret)

    def list(self, tenant_id: str) -> list[Endpoint]:
        return self.store.list_endpoints(tenant_id)

    def get(self, tenant_id: str, endpoint_id: str) -> Endpoint:
        ep = self.store.get_endpoint(tenant_id, endpoint_id)
        if ep is None:
            raise WebhookNotFound(endpoint_id)
        return ep

    def set_enabled(self, tenant_id: str, endpoint_id: str, enabled: bool | None) -> Endpoint:
        """Enabling an endpoint disabled by 410 Gone resumes its held deliveries."""
        ep = self.get(tenant_id, endpoint_id)
        if not isinstance(enabled, bool):
            raise InvalidWebhookRequest("enabled (boolean) is required")
        status, reason = ("active", None) if enabled else ("disabled", "disabled by the API")
        self.store.set_status(ep.id, status, reason)
        if enabled:
            self.kick(ep.id)
        return self.get(tenant_id, endpoint_id)

    def delete(self, tenant_id: str, endpoint_id: str) -> None:
        if not self.store.delete_endpoint(tenant_id, endpoint_id):
            raise WebhookNotFound(endpoint_id)

    def rotate_secret(self, tenant_id: str, endpoint_id: str) -> RotatedSecret:
        secret = self.new_secret()
        ep = self.store.rotate_secret(tenant_id, endpoint_id, secret, self.secret_grace_s)
        if ep is None:
            raise WebhookNotFound(endpoint_id)
        return RotatedSecret(ep, secret, self.secret_grace_s)

    def send_test(self, tenant_id: str, endpoint_id: str) -> QueuedTest:
        """Queue a signed ``webhook.test`` delivery through the normal path (order, retries, log)."""
        ep = self.get(tenant_id, endpoint_id)
        payload = {
            "type": "webhook.test", "id": str(uuid.uuid4()), "tenant_id": tenant_id, "endpoint_id": ep.id,
            "data": {"message": "test delivery from AgentFlow"}, "occurred_at": self.clock().isoformat(),
        }  # fmt: skip
        d = self.store.add_delivery(ep.id, tenant_id, payload, "test", "webhook.test")
        if d is None:  # pragma: no cover - the endpoint was deleted meanwhile
            raise WebhookNotFound(endpoint_id)
        self.kick(ep.id)
        return QueuedTest(d, payload)

    def deliveries(
        self, tenant_id: str, endpoint_id: str, limit: int = 50, status: str | None = None,
        before: int | None = None,
    ) -> DeliveryPage:  # fmt: skip
        """Newest first, each with its attempts; ``before`` is the previous page's ``next_before``."""
        ep = self.get(tenant_id, endpoint_id)
        if status and status not in STATUSES:
            raise InvalidWebhookRequest(f"status must be one of {list(STATUSES)}")
        limit = min(MAX_PAGE, max(1, limit))
        rows = self.store.list_deliveries(tenant_id, ep.id, limit, status, before)
        return DeliveryPage(rows, rows[-1].id if len(rows) == limit else None)

    def replay(
        self, tenant_id: str, endpoint_id: str, from_position: int | None, to_position: int | None,
        replay_id: str | None = None,
    ) -> RangeReplay:  # fmt: skip
        """Queue the endpoint's matching events in [from_position, to_position] again (kind ``replay``);
        the same ``replay_id`` queues nothing twice."""
        ep = self.get(tenant_id, endpoint_id)
        lo, hi = from_position, to_position
        if not (isinstance(lo, int) and isinstance(hi, int) and not isinstance(lo, bool)
                and not isinstance(hi, bool) and 1 <= lo <= hi):  # fmt: skip
            raise InvalidWebhookRequest(
                "from_position and to_position must be integers, 1 <= from_position <= to_position"
            )
        if replay_id is not None and (
            not isinstance(replay_id, str) or not replay_id or len(replay_id) > 100
        ):
            raise InvalidWebhookRequest("replay_id must be a non-empty string (<= 100 chars)")
        done = replay_range_to_endpoint(self.events, self.store, ep, lo, hi, replay_id)
        if done.created:
            self.kick(ep.id)
        return done

"""``/v1/alerts``: threshold alert rules on metrics, their test notification and history (tenant-scoped).

The use cases and the rule language are readmodels/alerts.py (AlertRules); evaluation runs in the
alert fleet's worker threads (services/alerts/fleet.py). Notifications are webhook deliveries to the
rule's ``endpoint_id``, or, without one, to every active endpoint of the tenant subscribed to
``alert.*`` (or to ``alert.firing`` / ``alert.resolved``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

import msgspec
from litestar import Response, delete, get, patch, post, put
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter, QueryParameter
from msgspec import UNSET, UnsetType

from readmodels.alerts import AlertNotFound, AlertRule, AlertRules, HistoryEntry, InvalidAlert
from services.api.blocking import in_thread
from services.api.dependencies import READ, WRITE
from services.api.errors import ApiError
from services.api.openapi import errors
from services.api.routes.webhooks import WebhookDelivery, delivery_view

AlertId = Annotated[str, PathParameter(description="an alert rule id (al_...)")]
AlertState = Literal["inactive", "pending", "firing", "resolved"]
StateQ = Annotated[AlertState | None, QueryParameter(name="state", description="only rules in this state")]
Duration = str | int | float  # seconds, or "30s", "5m", "1h", "250ms"


class AlertRuleBody(msgspec.Struct, forbid_unknown_fields=True):
    """A rule document. Create and replace (PUT) take defaults for what is left out; PATCH changes only
    what it names. Durations are seconds or strings like ``30s``, ``5m``; ``for``, ``keep_firing_for``
    and ``cooldown`` are aliases of the ``*_s`` fields."""

    name: str | None | UnsetType = UNSET
    description: str | None | UnsetType = UNSET
    metric: str | None | UnsetType = UNSET
    window: str | None | UnsetType = UNSET
    currency: str | None | UnsetType = UNSET
    filters: dict[str, Any] | None | UnsetType = UNSET  # dimension -> value
    condition: str | None | UnsetType = UNSET  # above | below | change_pct
    threshold: float | str | None | UnsetType = UNSET
    direction: str | None | UnsetType = UNSET  # up | down | either (change_pct)
    compare_to: str | None | UnsetType = UNSET  # previous_evaluation | previous_window (change_pct)
    for_s: Duration | None | UnsetType = UNSET
    keep_firing_for_s: Duration | None | UnsetType = UNSET
    cooldown_s: Duration | None | UnsetType = UNSET
    for_: Duration | None | UnsetType = msgspec.field(default=UNSET, name="for")
    keep_firing_for: Duration | None | UnsetType = UNSET
    cooldown: Duration | None | UnsetType = UNSET
    notify_resolved: bool | None | UnsetType = UNSET
    endpoint_id: str | None | UnsetType = UNSET
    enabled: bool | None | UnsetType = UNSET

    def given(self) -> dict[str, Any]:
        """The fields the client sent, by their wire names."""
        out = {}
        for f in msgspec.structs.fields(self):
            value = getattr(self, f.name)
            if value is not UNSET:
                out[f.encode_name] = value
        return out


class AlertRuleView(msgspec.Struct):
    id: str
    name: str
    description: str
    metric: str
    window: str
    currency: str | None
    filters: dict[str, str]
    condition: str
    threshold: float
    direction: str
    compare_to: str
    for_s: float
    keep_firing_for_s: float
    cooldown_s: float
    notify_resolved: bool
    endpoint_id: str | None
    enabled: bool
    state: str  # inactive | pending | firing | resolved
    state_since: str | None
    pending_since: str | None
    firing_since: str | None
    last_fired_at: str | None
    last_value: float | None
    last_evaluated_at: str | None
    last_error: str | None
    transitions: int
    next_check_at: str | None
    created_at: str
    updated_at: str


class AlertRuleList(msgspec.Struct):
    data: list[AlertRuleView]
    count: int


class AlertTestQueued(msgspec.Struct):
    deliveries: list[WebhookDelivery]
    payload: dict[str, Any]  # the alert.test body
    evaluation: dict[str, Any]  # value, baseline, holds, error


class AlertTransition(msgspec.Struct):
    id: int
    alert_id: str
    seq: int
    from_state: str
    to_state: str
    at: str
    value: float | None
    baseline: float | None
    threshold: float
    notifications: list[str]  # webhook-ids
    details: dict[str, Any]


class AlertHistory(msgspec.Struct):
    alert_id: str
    state: str
    data: list[AlertTransition]
    count: int
    next_before: int | None


def _iso(ts: Any) -> str | None:
    return ts.isoformat() if ts else None


def rule_view(r: AlertRule) -> AlertRuleView:
    return AlertRuleView(
        id=r.id, **r.definition(), state=r.state, state_since=_iso(r.state_since),
        pending_since=_iso(r.pending_since), firing_since=_iso(r.firing_since),
        last_fired_at=_iso(r.last_fired_at), last_value=r.last_value,
        last_evaluated_at=_iso(r.last_evaluated_at), last_error=r.last_error, transitions=r.seq,
        next_check_at=_iso(r.next_check_at), created_at=r.created_at.isoformat(),
        updated_at=r.updated_at.isoformat(),
    )  # fmt: skip


def _transition_view(h: HistoryEntry) -> AlertTransition:
    return AlertTransition(
        id=h.id, alert_id=h.rule_id, seq=h.seq, from_state=h.from_state, to_state=h.to_state,
        at=h.at.isoformat(), value=h.value, baseline=h.baseline, threshold=h.threshold,
        notifications=h.notified, details=h.details,
    )  # fmt: skip


@contextmanager
def _refusals() -> Iterator[None]:
    try:
        yield
    except AlertNotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from exc
    except InvalidAlert as exc:
        raise ApiError(422, exc.code, exc.message, exc.details) from exc


@post("/v1/alerts", opt=WRITE, status_code=201, responses=errors(401, 413, 422))
@in_thread
def create_alert(
    tenant: NamedDependency[str], alert_rules: NamedDependency[AlertRules], data: JSONBody[AlertRuleBody]
) -> Response[AlertRuleView]:
    with _refusals():
        rule = alert_rules.create(tenant, data.given())
    return Response(rule_view(rule), status_code=201, headers={"Location": f"/v1/alerts/{rule.id}"})


@get("/v1/alerts", opt=READ, responses=errors(401, 422))
@in_thread
def list_alerts(
    tenant: NamedDependency[str], alert_rules: NamedDependency[AlertRules],
    in_state: StateQ = None,
) -> AlertRuleList:  # fmt: skip
    with _refusals():
        rules = alert_rules.list(tenant, in_state)
    return AlertRuleList([rule_view(r) for r in rules], len(rules))


@get("/v1/alerts/{alert_id:str}", opt=READ, responses=errors(401, 404))
@in_thread
def get_alert(
    tenant: NamedDependency[str], alert_rules: NamedDependency[AlertRules], alert_id: AlertId
) -> AlertRuleView:
    with _refusals():
        return rule_view(alert_rules.get(tenant, alert_id))


@patch("/v1/alerts/{alert_id:str}", opt=WRITE, responses=errors(401, 404, 413, 422))
@in_thread
def patch_alert(
    tenant: NamedDependency[str],
    alert_rules: NamedDependency[AlertRules],
    alert_id: AlertId,
    data: JSONBody[AlertRuleBody | None] = None,
) -> AlertRuleView:
    """Change some fields; the evaluation state is kept (``enabled: false`` resets it, silently)."""
    with _refusals():
        return rule_view(alert_rules.update(tenant, alert_id, data.given() if data else {}, partial=True))


@put("/v1/alerts/{alert_id:str}", opt=WRITE, responses=errors(401, 404, 413, 422))
@in_thread
def replace_alert(
    tenant: NamedDependency[str],
    alert_rules: NamedDependency[AlertRules],
    alert_id: AlertId,
    data: JSONBody[AlertRuleBody],
) -> AlertRuleView:
    """Replace the definition (omitted optional fields take their defaults)."""
    with _refusals():
        return rule_view(alert_rules.update(tenant, alert_id, data.given(), partial=False))


@delete("/v1/alerts/{alert_id:str}", opt=WRITE, status_code=204, responses=errors(401, 404))
@in_thread
def delete_alert(
    tenant: NamedDependency[str], alert_rules: NamedDependency[AlertRules], alert_id: AlertId
) -> None:
    with _refusals():
        alert_rules.delete(tenant, alert_id)


@post("/v1/alerts/{alert_id:str}/test", opt=WRITE, status_code=202, responses=errors(401, 404, 422))
@in_thread
def test_alert(
    tenant: NamedDependency[str], alert_rules: NamedDependency[AlertRules], alert_id: AlertId
) -> AlertTestQueued:
    """202: a signed ``alert.test`` notification through the normal webhook path, with the rule's
    current value; the rule's state and history are not touched. 422 when no endpoint would get it."""
    with _refusals():
        out = alert_rules.send_test(tenant, alert_id)
    return AlertTestQueued([delivery_view(d) for d in out.deliveries], out.payload, out.evaluation)


@get("/v1/alerts/{alert_id:str}/history", opt=READ, responses=errors(401, 404, 422))
@in_thread
def alert_history(
    tenant: NamedDependency[str],
    alert_rules: NamedDependency[AlertRules],
    alert_id: AlertId,
    limit: Annotated[int, QueryParameter(description="page size (1-500)")] = 100,
    before: Annotated[int | None, QueryParameter(description="the next_before of the previous page")] = None,
) -> AlertHistory:
    """Transitions newest first."""
    with _refusals():
        page = alert_rules.history(tenant, alert_id, limit, before)
    rows = [_transition_view(h) for h in page.entries]
    return AlertHistory(page.rule.id, page.rule.state, rows, len(rows), page.next_before)


ALERT_ROUTES = [
    create_alert,
    list_alerts,
    get_alert,
    patch_alert,
    replace_alert,
    delete_alert,
    test_alert,
    alert_history,
]

"""``/v1/alerts``: threshold alert rules on metrics, their test notification and history (tenant-scoped).

Evaluation runs in the process's alert evaluator (services/alerts/evaluator.py); notifications are
webhook deliveries (services/workers) to the rule's ``endpoint_id``, or, without one, to every active
endpoint of the tenant subscribed to ``alert.*`` (or to ``alert.firing`` / ``alert.resolved``).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from anyio import to_thread
from litestar import Request, Response, delete, get, patch, post, put
from litestar.handlers import HTTPRouteHandler

from readmodels.metrics import METRICS, NOW
from services.alerts.evaluator import runtime_metric
from services.alerts.rules import COMPARE_TO, STATES, InvalidRule, holds, parse_duration, spec_from
from services.alerts.store import RULE_FIELDS, AlertRule, AlertStore
from services.api.context import json_body, json_response, runtime_of, tenant_of
from services.api.errors import ApiError
from services.runtime import Runtime

MAX_HISTORY = 500
_ALIASES = {"for": "for_s", "keep_firing_for": "keep_firing_for_s", "cooldown": "cooldown_s"}
_DEFAULTS: dict[str, Any] = {
    "description": "", "currency": None, "filters": {}, "direction": "either",
    "compare_to": "previous_evaluation", "for_s": 0.0, "keep_firing_for_s": 0.0, "cooldown_s": 0.0,
    "notify_resolved": True, "endpoint_id": None, "enabled": True,
}  # fmt: skip


def _invalid(field: str, message: str, code: str = "validation_failed") -> ApiError:
    return ApiError(422, code, f"{field}: {message}", [{"field": field, "message": message}])


def _store(runtime: Runtime) -> AlertStore:
    evaluator = getattr(runtime, "alerts", None)
    return evaluator.store if evaluator is not None else AlertStore(runtime.engine)


def _request_evaluation(runtime: Runtime, rule_id: str) -> None:
    evaluator = getattr(runtime, "alerts", None)
    if evaluator is not None:
        evaluator.request(rule_id)


def _endpoint_exists(runtime: Runtime, tenant: str, endpoint_id: str) -> bool:
    return runtime.webhook_store.get_endpoint(tenant, endpoint_id) is not None


def definition(
    runtime: Runtime, tenant: str, body: dict[str, Any], base: dict[str, Any] | None
) -> dict[str, Any]:
    """Validate a rule document: ``base`` None for create/PUT (defaults fill the gaps), the current
    definition for PATCH. Durations (``for``, ``keep_firing_for``, ``cooldown``) are seconds or
    strings like ``30s``/``5m``; stored as ``*_s`` seconds."""
    given: dict[str, Any] = {}
    for key, value in body.items():
        field = _ALIASES.get(key, key)
        if field not in RULE_FIELDS:
            raise _invalid(key, f"unknown field (allowed: {', '.join(sorted([*RULE_FIELDS, *_ALIASES]))})")
        given[field] = value
    doc = {**(base if base is not None else _DEFAULTS), **given}
    name = doc.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _invalid("name", "a non-empty string is required")
    doc["name"] = name.strip()
    if not isinstance(doc.get("description") or "", str):
        raise _invalid("description", "must be a string")
    doc["description"] = doc.get("description") or ""
    metric = METRICS.get(str(doc.get("metric")))
    if metric is None:
        raise ApiError(422, "unknown_metric", f"unknown metric {doc.get('metric')!r}",
                       {"available": sorted(METRICS)})  # fmt: skip
    window = doc.get("window") or metric.windows[0]
    if window not in metric.windows:
        offered = ", ".join(metric.windows)
        raise ApiError(422, "invalid_window", f"metric {metric.name} offers windows {offered}",
                       {"available_windows": list(metric.windows)})  # fmt: skip
    doc["window"] = window
    filters = doc.get("filters") or {}
    if not isinstance(filters, dict) or not all(isinstance(v, str) and v for v in filters.values()):
        raise _invalid("filters", "must be an object of dimension -> non-empty string")
    currency = doc.get("currency")
    if currency is not None:
        if not isinstance(currency, str) or len(currency.strip()) != 3:
            raise _invalid("currency", "must be an ISO 4217 code")
        currency = currency.strip().upper()
        if not metric.money:
            if "currency" not in metric.dimensions:
                raise _invalid("currency", f"metric {metric.name} is not a money metric and has no currency")
            filters = {**filters, "currency": currency}  # a currency dimension filter
            currency = None
    for dim in filters:
        if dim not in metric.dimensions or (dim == "currency" and metric.money):
            raise ApiError(422, "invalid_dimension",
                           f"metric {metric.name} offers dimensions {', '.join(metric.dimensions) or 'none'}"
                           + (" (use currency for a money metric's currency)" if metric.money else ""),
                           {"dimensions": list(metric.dimensions)})  # fmt: skip
    doc["filters"] = {k: (v.upper() if k == "currency" else v) for k, v in sorted(filters.items())}
    doc["currency"] = currency
    try:
        for f in ("for_s", "keep_firing_for_s", "cooldown_s"):
            doc[f] = parse_duration(doc.get(f), f)
        spec_from(doc)
    except InvalidRule as exc:
        raise _invalid(exc.field, exc.message) from exc
    doc["threshold"] = float(doc["threshold"])
    doc["direction"] = doc.get("direction") or "either"
    compare_to = doc.get("compare_to") or "previous_evaluation"
    if compare_to not in COMPARE_TO:
        raise _invalid("compare_to", f"must be one of {', '.join(COMPARE_TO)}")
    if compare_to == "previous_window" and window == NOW:
        raise _invalid("compare_to", f"{metric.name} is a snapshot metric: compare to previous_evaluation")
    doc["compare_to"] = compare_to
    for flag in ("enabled", "notify_resolved"):
        if not isinstance(doc.get(flag), bool):
            raise _invalid(flag, "must be a boolean")
    endpoint_id = doc.get("endpoint_id")
    if endpoint_id is not None and (
        not isinstance(endpoint_id, str) or not _endpoint_exists(runtime, tenant, endpoint_id)
    ):
        raise _invalid("endpoint_id", f"webhook {endpoint_id!r} not found")
    return {f: doc.get(f) for f in RULE_FIELDS}


async def _rule(runtime: Runtime, tenant: str, rule_id: str) -> AlertRule:
    rule = await to_thread.run_sync(_store(runtime).get, tenant, rule_id)
    if rule is None:
        raise ApiError(404, "not_found", f"alert {rule_id} not found")
    return rule


@post("/v1/alerts", status_code=201, name="alerts.create")
async def create_alert(request: Request[Any, Any, Any]) -> Response[bytes]:
    tenant = tenant_of(request)
    runtime = runtime_of(request)
    body = await json_body(request)
    doc = await to_thread.run_sync(definition, runtime, tenant, body, None)
    rule = await to_thread.run_sync(_store(runtime).create, tenant, doc)
    _request_evaluation(runtime, rule.id)
    return json_response(rule.public(), 201, {"Location": f"/v1/alerts/{rule.id}"})


@get("/v1/alerts", name="alerts.list")
async def list_alerts(request: Request[Any, Any, Any]) -> Response[bytes]:
    tenant = tenant_of(request)
    state = request.query_params.get("state")
    if state and state not in STATES:
        raise _invalid("state", f"must be one of {', '.join(STATES)}")
    rules = await to_thread.run_sync(_store(runtime_of(request)).list_rules, tenant, state)
    return json_response({"data": [r.public() for r in rules], "count": len(rules)})


@get("/v1/alerts/{alert_id:str}", name="alerts.get")
async def get_alert(request: Request[Any, Any, Any], alert_id: str) -> Response[bytes]:
    return json_response((await _rule(runtime_of(request), tenant_of(request), alert_id)).public())


async def _update(request: Request[Any, Any, Any], alert_id: str, partial: bool) -> Response[bytes]:
    tenant = tenant_of(request)
    runtime = runtime_of(request)
    body = await json_body(request)
    current = await _rule(runtime, tenant, alert_id)
    base = current.definition() if partial else None
    doc = await to_thread.run_sync(definition, runtime, tenant, body, base)
    rule = await to_thread.run_sync(_store(runtime).update, tenant, alert_id, doc)
    if rule is None:  # pragma: no cover - deleted meanwhile
        raise ApiError(404, "not_found", f"alert {alert_id} not found")
    _request_evaluation(runtime, rule.id)
    return json_response(rule.public())


@patch("/v1/alerts/{alert_id:str}", name="alerts.patch")
async def patch_alert(request: Request[Any, Any, Any], alert_id: str) -> Response[bytes]:
    """Change some fields; the evaluation state is kept (``enabled: false`` resets it, silently)."""
    return await _update(request, alert_id, partial=True)


@put("/v1/alerts/{alert_id:str}", name="alerts.replace")
async def replace_alert(request: Request[Any, Any, Any], alert_id: str) -> Response[bytes]:
    """Replace the definition (omitted optional fields take their defaults)."""
    return await _update(request, alert_id, partial=False)


@delete("/v1/alerts/{alert_id:str}", status_code=204, name="alerts.delete")
async def delete_alert(request: Request[Any, Any, Any], alert_id: str) -> None:
    tenant = tenant_of(request)
    if not await to_thread.run_sync(_store(runtime_of(request)).delete, tenant, alert_id):
        raise ApiError(404, "not_found", f"alert {alert_id} not found")


def _send_test(runtime: Runtime, rule: AlertRule) -> dict[str, Any]:
    """Measure the rule now (no state change) and queue an ``alert.test`` notification to its targets."""
    now = datetime.now(UTC)
    evaluation: dict[str, Any] = {"value": None, "holds": None, "error": None}
    try:
        value = runtime_metric(runtime)(
            rule.tenant_id, rule.metric, rule.window, rule.currency, rule.filters, now
        )
        baseline = rule.last_value if rule.condition == "change_pct" else None
        evaluation.update(value=value, baseline=baseline, holds=holds(rule.spec, value, baseline))
    except Exception as exc:  # the test still shows the delivery path works
        evaluation["error"] = f"{type(exc).__name__}: {exc}"[:500]
    payload = {
        "type": "alert.test", "id": str(uuid.uuid4()), "tenant_id": rule.tenant_id,
        "data": {"alert_id": rule.id, "name": rule.name, "state": rule.state, "metric": rule.metric,
                 "window": rule.window, "filters": rule.filters, "currency": rule.currency,
                 "condition": rule.condition, "threshold": rule.threshold, **evaluation},
        "occurred_at": now.isoformat(),
    }  # fmt: skip
    deliveries = []
    with runtime.engine.begin() as conn:
        for endpoint_id in AlertStore.targets(conn, rule, "alert.test"):
            d = runtime.webhook_store.add_delivery(
                endpoint_id, rule.tenant_id, payload, "alert", "alert.test", conn=conn
            )
            if d is not None:
                deliveries.append(d)
    fleet = runtime.webhooks
    for d in deliveries:
        if fleet is not None:
            fleet.kick(d.endpoint_id)
    return {"deliveries": [d.public() for d in deliveries], "payload": payload, "evaluation": evaluation}


@post("/v1/alerts/{alert_id:str}/test", status_code=202, name="alerts.test")
async def test_alert(request: Request[Any, Any, Any], alert_id: str) -> Response[bytes]:
    """202: a signed ``alert.test`` notification through the normal webhook path, with the rule's
    current value; the rule's state and history are not touched. 422 when no endpoint would get it."""
    tenant = tenant_of(request)
    runtime = runtime_of(request)
    rule = await _rule(runtime, tenant, alert_id)
    out = await to_thread.run_sync(_send_test, runtime, rule)
    if not out["deliveries"]:
        raise ApiError(422, "no_endpoint", "no webhook endpoint receives this alert's notifications "
                       "(set endpoint_id, or subscribe an endpoint to alert.*)")  # fmt: skip
    return json_response(out, 202)


@get("/v1/alerts/{alert_id:str}/history", name="alerts.history")
async def alert_history(request: Request[Any, Any, Any], alert_id: str) -> Response[bytes]:
    """Transitions newest first: ``?limit=`` (100), ``?before=<id>`` pages."""
    tenant = tenant_of(request)
    runtime = runtime_of(request)
    rule = await _rule(runtime, tenant, alert_id)
    q = request.query_params
    try:
        limit = min(MAX_HISTORY, max(1, int(q.get("limit") or 100)))
        before = int(q["before"]) if q.get("before") else None
    except ValueError as exc:
        raise ApiError(422, "validation_failed", "limit and before must be integers") from exc
    rows = await to_thread.run_sync(lambda: _store(runtime).history(tenant, rule.id, limit, before))
    next_before = rows[-1].id if len(rows) == limit else None
    return json_response(
        {
            "alert_id": rule.id,
            "state": rule.state,
            "data": [h.public() for h in rows],
            "count": len(rows),
            "next_before": next_before,
        }  # fmt: skip
    )


ALERT_ROUTES: list[HTTPRouteHandler] = [
    create_alert,
    list_alerts,
    get_alert,
    patch_alert,
    replace_alert,
    delete_alert,
    test_alert,
    alert_history,
]

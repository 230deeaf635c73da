"""Alert rules, their evaluation state and history in Postgres (migration 0004).

State changes happen only in ``AlertStore.locked(conn, rule_id)`` + ``save_state``/``add_history``
inside one transaction that holds the rule's row lock (SELECT ... FOR UPDATE SKIP LOCKED), so two
evaluators (threads or processes) never evaluate one rule at the same time.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from connectors.database import AutocommitStore
from services.alerts.rules import RuleSpec, RuleState, Transition

# the fields a client sets (create/replace/patch); the rest is evaluation state
RULE_FIELDS = (
    "name", "description", "metric", "window", "currency", "filters", "condition", "threshold", "direction",
    "compare_to", "for_s", "keep_firing_for_s", "cooldown_s", "notify_resolved", "endpoint_id", "enabled",
)  # fmt: skip
_COLUMN = {"window": "metric_window"}

_COLS = (
    "id, tenant_id, name, description, metric, metric_window, currency, filters, condition, threshold, "
    "direction, compare_to, for_s, keep_firing_for_s, cooldown_s, notify_resolved, endpoint_id, enabled, "
    "state, state_since, pending_since, firing_since, clear_since, last_fired_at, last_value, "
    "last_evaluated_at, last_error, seq, next_check_at, created_at, updated_at"
)
_H_COLS = "id, rule_id, seq, from_state, to_state, at, value, baseline, threshold, notified, details"


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts else None


@dataclass(frozen=True)
class AlertRule:
    id: str
    tenant_id: str
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
    state: str
    state_since: datetime | None
    pending_since: datetime | None
    firing_since: datetime | None
    clear_since: datetime | None
    last_fired_at: datetime | None
    last_value: float | None
    last_evaluated_at: datetime | None
    last_error: str | None
    seq: int
    next_check_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @property
    def spec(self) -> RuleSpec:
        return RuleSpec(
            self.condition, self.threshold, self.direction, self.for_s, self.keep_firing_for_s,
            self.cooldown_s, self.notify_resolved,
        )  # fmt: skip

    @property
    def rule_state(self) -> RuleState:
        return RuleState(
            self.state, self.state_since, self.pending_since, self.firing_since, self.clear_since,
            self.last_fired_at, self.seq,
        )  # fmt: skip

    def definition(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in RULE_FIELDS}

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id, **self.definition(),
            "state": self.state, "state_since": _iso(self.state_since),
            "pending_since": _iso(self.pending_since), "firing_since": _iso(self.firing_since),
            "last_fired_at": _iso(self.last_fired_at), "last_value": self.last_value,
            "last_evaluated_at": _iso(self.last_evaluated_at), "last_error": self.last_error,
            "transitions": self.seq, "next_check_at": _iso(self.next_check_at),
            "created_at": self.created_at.isoformat(), "updated_at": self.updated_at.isoformat(),
        }  # fmt: skip


def _rule(row: Sequence[Any]) -> AlertRule:
    values = list(row)
    if isinstance(values[7], str):
        values[7] = json.loads(values[7])
    return AlertRule(*values)


@dataclass(frozen=True)
class HistoryEntry:
    id: int
    rule_id: str
    seq: int
    from_state: str
    to_state: str
    at: datetime
    value: float | None
    baseline: float | None
    threshold: float
    notified: list[str]
    details: dict[str, Any]

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id, "alert_id": self.rule_id, "seq": self.seq, "from_state": self.from_state,
            "to_state": self.to_state, "at": self.at.isoformat(), "value": self.value,
            "baseline": self.baseline, "threshold": self.threshold, "notifications": self.notified,
            "details": self.details,
        }  # fmt: skip


def _history(row: Sequence[Any]) -> HistoryEntry:
    values = list(row)
    values[9] = list(values[9] or [])
    if isinstance(values[10], str):
        values[10] = json.loads(values[10])
    return HistoryEntry(*values)


class AlertStore(AutocommitStore):
    # -- CRUD -----------------------------------------------------------------------------------------
    @staticmethod
    def _params(definition: dict[str, Any]) -> dict[str, Any]:
        p = {f: definition[f] for f in RULE_FIELDS}
        p["filters"] = json.dumps(p["filters"] or {})
        return p

    def create(self, tenant_id: str, definition: dict[str, Any]) -> AlertRule:
        cols = ", ".join(_COLUMN.get(f, f) for f in RULE_FIELDS)
        vals = ", ".join(f"%({f})s" + ("::jsonb" if f == "filters" else "") for f in RULE_FIELDS)
        row = self._one(
            f"INSERT INTO alert_rules (id, tenant_id, {cols}) VALUES (%(id)s, %(t)s, {vals}) "
            f"RETURNING {_COLS}",
            {"id": "al_" + uuid.uuid4().hex[:20], "t": tenant_id, **self._params(definition)},
        )
        return _rule(row)

    def get(self, tenant_id: str | None, rule_id: str) -> AlertRule | None:
        sql = f"SELECT {_COLS} FROM alert_rules WHERE id = %(id)s"
        if tenant_id is not None:
            sql += " AND tenant_id = %(t)s"
        row = self._one(sql, {"id": rule_id, "t": tenant_id})
        return _rule(row) if row else None

    def list_rules(self, tenant_id: str, state: str | None = None) -> list[AlertRule]:
        sql = f"SELECT {_COLS} FROM alert_rules WHERE tenant_id = %(t)s"
        if state:
            sql += " AND state = %(s)s"
        rows = self._all(sql + " ORDER BY created_at, id", {"t": tenant_id, "s": state})
        return [_rule(r) for r in rows]

    def update(self, tenant_id: str, rule_id: str, definition: dict[str, Any]) -> AlertRule | None:
        """Replace the definition; the evaluation state is kept (the next evaluation applies the new
        definition to it), except that a disabled rule goes back to ``inactive`` without notifying."""
        sets = ", ".join(
            f"{_COLUMN.get(f, f)} = %({f})s" + ("::jsonb" if f == "filters" else "") for f in RULE_FIELDS
        )
        row = self._one(
            f"""UPDATE alert_rules SET {sets}, updated_at = now(),
                    state = CASE WHEN %(enabled)s THEN state ELSE 'inactive' END,
                    pending_since = CASE WHEN %(enabled)s THEN pending_since END,
                    firing_since = CASE WHEN %(enabled)s THEN firing_since END,
                    clear_since = CASE WHEN %(enabled)s THEN clear_since END,
                    next_check_at = now()
                WHERE id = %(id)s AND tenant_id = %(t)s RETURNING {_COLS}""",
            {"id": rule_id, "t": tenant_id, **self._params(definition)},
        )
        return _rule(row) if row else None

    def delete(self, tenant_id: str, rule_id: str) -> bool:
        row = self._one(
            "DELETE FROM alert_rules WHERE id = %(id)s AND tenant_id = %(t)s RETURNING 1",
            {"id": rule_id, "t": tenant_id},
        )
        return row is not None

    def history(
        self, tenant_id: str, rule_id: str, limit: int = 100, before_id: int | None = None
    ) -> list[HistoryEntry]:
        sql = f"SELECT {_H_COLS} FROM alert_history WHERE tenant_id = %(t)s AND rule_id = %(r)s"
        if before_id:
            sql += " AND id < %(b)s"
        rows = self._all(sql + " ORDER BY id DESC LIMIT %(n)s", {"t": tenant_id, "r": rule_id, "b": before_id,
                                                                   "n": limit})  # fmt: skip
        return [_history(r) for r in rows]

    # -- what to evaluate -----------------------------------------------------------------------------
    def ids_for(self, moved: Iterable[tuple[str, str]]) -> list[str]:
        """Enabled rules of these (tenant, metric) pairs."""
        pairs = sorted(set(moved))
        if not pairs:
            return []
        rows = self._all(
            "SELECT r.id FROM alert_rules r JOIN unnest(%(t)s::text[], %(m)s::text[]) AS p(t, m) "
            "ON r.tenant_id = p.t AND r.metric = p.m WHERE r.enabled",
            {"t": [p[0] for p in pairs], "m": [p[1] for p in pairs]},
        )
        return [r[0] for r in rows]

    def enabled_ids(self) -> list[str]:
        return [r[0] for r in self._all("SELECT id FROM alert_rules WHERE enabled ORDER BY id", {})]

    def due_ids(self, now: datetime) -> list[str]:
        rows = self._all(
            "SELECT id FROM alert_rules WHERE enabled AND next_check_at <= %(n)s ORDER BY next_check_at",
            {"n": now},
        )
        return [r[0] for r in rows]

    def next_due(self) -> datetime | None:
        row = self._one("SELECT min(next_check_at) FROM alert_rules WHERE enabled", {})
        return row[0] if row else None

    # -- evaluation (inside the caller's transaction) -------------------------------------------------
    @staticmethod
    def locked(conn: Connection, rule_id: str) -> AlertRule | None:
        """The rule with its row lock held until the transaction ends; None when it is gone, disabled
        or being evaluated right now by someone else (who will see the same events)."""
        row = conn.exec_driver_sql(
            f"SELECT {_COLS} FROM alert_rules WHERE id = %(id)s AND enabled FOR UPDATE SKIP LOCKED",
            {"id": rule_id},
        ).first()
        return _rule(row) if row else None

    @staticmethod
    def save_state(
        conn: Connection,
        rule_id: str,
        st: RuleState,
        value: float | None,
        now: datetime,
        error: str | None,
        next_check_at: datetime | None,
    ) -> None:
        conn.exec_driver_sql(
            """UPDATE alert_rules SET state = %(state)s, state_since = %(since)s, pending_since = %(p)s,
                   firing_since = %(f)s, clear_since = %(c)s, last_fired_at = %(lf)s, seq = %(seq)s,
                   last_value = COALESCE(%(v)s, last_value), last_evaluated_at = %(now)s,
                   last_error = %(err)s, next_check_at = %(next)s
               WHERE id = %(id)s""",
            {
                "id": rule_id, "state": st.state, "since": st.state_since, "p": st.pending_since,
                "f": st.firing_since, "c": st.clear_since, "lf": st.last_fired_at, "seq": st.seq,
                "v": value, "now": now, "err": error, "next": next_check_at,
            },
        )  # fmt: skip

    @staticmethod
    def add_history(
        conn: Connection, rule: AlertRule, t: Transition, notified: list[str], details: dict[str, Any]
    ) -> None:
        """Unique on (rule, seq): recording one transition twice fails the whole transaction."""
        conn.exec_driver_sql(
            """INSERT INTO alert_history (rule_id, tenant_id, seq, from_state, to_state, at, value, baseline,
                                          threshold, notified, details)
               VALUES (%(r)s, %(t)s, %(seq)s, %(fr)s, %(to)s, %(at)s, %(v)s, %(b)s, %(th)s, %(n)s,
                       %(d)s::jsonb)""",
            {
                "r": rule.id, "t": rule.tenant_id, "seq": t.seq, "fr": t.from_state, "to": t.to_state,
                "at": t.at, "v": t.value, "b": t.baseline, "th": rule.threshold, "n": notified,
                "d": json.dumps(details),
            },
        )  # fmt: skip

    @staticmethod
    def targets(conn: Connection, rule: AlertRule, event_type: str) -> list[str]:
        """The endpoint ids a notification goes to: the rule's endpoint, or (without one) every active
        endpoint of the tenant whose event_types list ``alert.*`` or this exact type."""
        if rule.endpoint_id:
            return [rule.endpoint_id]
        rows = conn.exec_driver_sql(
            "SELECT id FROM webhook_endpoints WHERE tenant_id = %(t)s AND status = 'active' "
            "AND event_types && %(types)s::text[] ORDER BY id",
            {"t": rule.tenant_id, "types": ["alert.*", event_type]},
        ).all()
        return [r[0] for r in rows]

"""Alert rules, their evaluation state and history in Postgres (migration 0004), and the queueing of
their notifications as webhook deliveries.

State changes happen only inside ``AlertStore.evaluation(rule_id)`` (or ``locked(conn, rule_id)`` +
``save_state``/``add_history``): one transaction that holds the rule's row lock (SELECT ... FOR UPDATE
SKIP LOCKED), so two evaluators (threads or processes) never evaluate one rule at the same time, and
the notifications of a transition commit with it. The rules themselves are readmodels/alerts.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection, Engine

from connectors.database import AutocommitStore
from connectors.webhook_store import WebhookStore
from readmodels.alerts import RULE_FIELDS, AlertRule, HistoryEntry, RuleState, Transition
from readmodels.webhooks import Delivery

_COLUMN = {"window": "metric_window"}

_COLS = (
    "id, tenant_id, name, description, metric, metric_window, currency, filters, condition, threshold, "
    "direction, compare_to, for_s, keep_firing_for_s, cooldown_s, notify_resolved, endpoint_id, enabled, "
    "state, state_since, pending_since, firing_since, clear_since, last_fired_at, last_value, "
    "last_evaluated_at, last_error, seq, next_check_at, created_at, updated_at"
)
_H_COLS = "id, rule_id, seq, from_state, to_state, at, value, baseline, threshold, notified, details"


def _rule(row: Sequence[Any]) -> AlertRule:
    values = list(row)
    if isinstance(values[7], str):
        values[7] = json.loads(values[7])
    return AlertRule(*values)


def _history(row: Sequence[Any]) -> HistoryEntry:
    values = list(row)
    values[9] = list(values[9] or [])
    if isinstance(values[10], str):
        values[10] = json.loads(values[10])
    return HistoryEntry(*values)


class RuleEvaluation:
    """One rule under its row lock, inside the evaluation's transaction (``AlertStore.evaluation``)."""

    def __init__(self, conn: Connection, rule: AlertRule, webhooks: WebhookStore) -> None:
        self.conn = conn
        self.rule = rule
        self.webhooks = webhooks

    def save_state(
        self,
        st: RuleState,
        value: float | None,
        now: datetime,
        error: str | None,
        next_check_at: datetime | None,
    ) -> None:
        AlertStore.save_state(self.conn, self.rule.id, st, value, now, error, next_check_at)

    def add_history(self, t: Transition, notified: list[str], details: dict[str, Any]) -> None:
        AlertStore.add_history(self.conn, self.rule, t, notified, details)

    def notify(self, event_type: str, body: dict[str, Any], dedup_key: str) -> list[Delivery]:
        """Queue ``body`` to the rule's targets, once per ``dedup_key`` (none for a key used before)."""
        out = []
        for endpoint_id in AlertStore.targets(self.conn, self.rule, event_type):
            d = self.webhooks.add_delivery(
                endpoint_id,
                self.rule.tenant_id,
                body,
                "alert",
                event_type,
                dedup_key=dedup_key,
                conn=self.conn,
            )
            if d is not None:
                out.append(d)
        return out


class AlertStore(AutocommitStore):
    def __init__(self, engine: Engine, webhooks: WebhookStore | None = None) -> None:
        super().__init__(engine)
        self.webhooks = webhooks or WebhookStore(engine)

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

    def is_enabled(self, rule_id: str) -> bool:
        row = self._one("SELECT enabled FROM alert_rules WHERE id = %(id)s", {"id": rule_id})
        return bool(row and row[0])

    def due_ids(self, now: datetime) -> list[str]:
        rows = self._all(
            "SELECT id FROM alert_rules WHERE enabled AND next_check_at <= %(n)s ORDER BY next_check_at",
            {"n": now},
        )
        return [r[0] for r in rows]

    def next_due(self) -> datetime | None:
        row = self._one("SELECT min(next_check_at) FROM alert_rules WHERE enabled", {})
        return row[0] if row else None

    # -- notifications ------------------------------------------------------------------------------
    def queue_notification(
        self, rule: AlertRule, event_type: str, payload: dict[str, Any], kind: str
    ) -> list[Delivery]:
        """Queue ``payload`` to the rule's targets in one transaction (the test notification)."""
        out = []
        with self.engine.begin() as conn:
            for endpoint_id in self.targets(conn, rule, event_type):
                d = self.webhooks.add_delivery(
                    endpoint_id, rule.tenant_id, payload, kind, event_type, conn=conn
                )
                if d is not None:
                    out.append(d)
        return out

    # -- evaluation ---------------------------------------------------------------------------------
    @contextmanager
    def evaluation(self, rule_id: str) -> Iterator[RuleEvaluation | None]:
        """The rule under its row lock in one transaction, committed when the block ends (rolled back
        if it raises); None when the rule is gone, disabled or being evaluated by someone else."""
        with self.engine.begin() as conn:
            rule = self.locked(conn, rule_id)
            yield None if rule is None else RuleEvaluation(conn, rule, self.webhooks)

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

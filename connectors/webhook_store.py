"""Webhook endpoints, deliveries (the outbox the workers drain) and the attempt log, in Postgres.

Order: deliveries to one endpoint go out by ascending ``id``; the relay inserts event deliveries in
position order, so an endpoint never receives position N+1 before N is delivered or exhausted.
Exclusivity: one drainer per endpoint, by a lease on the endpoint row that expires if its holder dies.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy.engine import Connection

from connectors.database import AutocommitStore, pooled_psycopg
from domain.events import RecordedEvent

OPEN = ("pending", "delivering")
FINAL = ("succeeded", "exhausted", "failed")

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


@dataclass(frozen=True)
class Endpoint:
    id: str
    tenant_id: str
    url: str
    description: str
    event_types: list[str]
    entity_ids: list[str]
    predicates: list[dict[str, Any]]
    secrets: list[dict[str, Any]]
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

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id, "url": self.url, "description": self.description,
            "event_types": self.event_types, "entity_ids": self.entity_ids, "filters": self.predicates,
            "status": self.status, "disabled_reason": self.disabled_reason,
            "start_position": self.start_position,
            "created_at": self.created_at.isoformat(), "updated_at": self.updated_at.isoformat(),
        }  # fmt: skip


@dataclass(frozen=True)
class OpenDelivery:
    id: int
    message_id: str
    body: str
    status: str
    attempts: int
    wait_s: float  # <= 0 when due


@dataclass
class Delivery:
    id: int
    message_id: str
    endpoint_id: str
    kind: str
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

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id, "webhook_id": self.message_id, "endpoint_id": self.endpoint_id, "kind": self.kind,
            "event_id": self.event_id, "position": self.position, "event_type": self.event_type,
            "status": self.status, "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at.isoformat()
            if self.next_attempt_at and self.status in OPEN else None,
            "last_status": self.last_status, "last_error": self.last_error,
            "created_at": self.created_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "attempt_log": self.attempt_log,
        }  # fmt: skip


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


_MSG_NS = uuid.UUID("6f1d4c52-9b8e-4f0a-a3de-5a1c0e7b9d21")


def stable_message_id(endpoint_id: str, dedup_key: str) -> str:
    """The webhook-id of (endpoint, dedup key): a delivery re-created after a lost (asynchronously
    committed) insert keeps the webhook-id the receiver may already have seen."""
    return "msg_" + uuid.uuid5(_MSG_NS, f"{endpoint_id}\x00{dedup_key}").hex


_EP_COLS = (
    "id, tenant_id, url, description, event_types, entity_ids, predicates, secrets, status, "
    "disabled_reason, start_position, created_at, updated_at"
)
_DL_COLS = (
    "id, message_id, endpoint_id, kind, event_id::text, position, event_type, status, attempts, "
    "next_attempt_at, last_status, last_error, created_at, finished_at"
)

INSERT_DELIVERIES_SQL = """
INSERT INTO webhook_deliveries (message_id, tenant_id, endpoint_id, kind, dedup_key, event_id, position,
                                event_type, body)
SELECT r.message_id, r.tenant_id, r.endpoint_id, r.kind, r.dedup_key, r.event_id::uuid, r.position,
       r.event_type, r.body
FROM ROWS FROM (jsonb_to_recordset(%(rows)s::jsonb) AS (message_id text, tenant_id text,
     endpoint_id text, kind text, dedup_key text, event_id text, position bigint, event_type text, body text))
     WITH ORDINALITY AS r(message_id, tenant_id, endpoint_id, kind, dedup_key, event_id, position, event_type,
                          body, ord)
JOIN webhook_endpoints e ON e.id = r.endpoint_id
ORDER BY r.ord
ON CONFLICT (endpoint_id, dedup_key) DO NOTHING
RETURNING endpoint_id
"""

ACQUIRE_SQL = f"""
UPDATE webhook_endpoints SET lease_owner = %(o)s, lease_until = now() + make_interval(secs => %(l)s)
WHERE id = %(e)s AND status = 'active' AND (lease_until IS NULL OR lease_until < now())
RETURNING {_EP_COLS}
"""

OPEN_SQL = """
SELECT id, message_id, body, status, attempts, extract(epoch FROM next_attempt_at - now())::float8
FROM webhook_deliveries WHERE endpoint_id = %(e)s AND status IN ('pending', 'delivering')
ORDER BY id LIMIT %(n)s
"""

# marks the delivery in flight and extends the lease, only while this drainer still holds it
START_SQL = """
WITH l AS (
    UPDATE webhook_endpoints SET lease_until = now() + make_interval(secs => %(l)s)
    WHERE id = %(e)s AND lease_owner = %(o)s AND status = 'active' RETURNING 1
)
UPDATE webhook_deliveries SET status = 'delivering', attempts = attempts + 1
WHERE id = %(d)s AND status IN ('pending', 'delivering') AND EXISTS (SELECT 1 FROM l)
RETURNING attempts
"""

FINISH_SQL = """
WITH d AS (
    UPDATE webhook_deliveries SET
        status = %(status)s, last_status = %(code)s, last_error = %(err)s,
        next_attempt_at = CASE WHEN %(delay)s::float8 IS NULL THEN next_attempt_at
                               ELSE now() + make_interval(secs => %(delay)s::float8) END,
        finished_at = CASE WHEN %(status)s IN ('succeeded', 'exhausted', 'failed') THEN now() END
    WHERE id = %(d)s
    RETURNING id, attempts, next_attempt_at
)
INSERT INTO webhook_attempts (delivery_id, attempt, started_at, latency_ms, status_code, outcome, error,
                              response_excerpt, retry_at)
SELECT d.id, d.attempts, %(started)s, %(latency)s, %(code)s, %(outcome)s, %(err)s, %(excerpt)s,
       CASE WHEN %(status)s IN ('pending', 'delivering') THEN d.next_attempt_at END
FROM d
"""

HEAD_DUE = """
SELECT 1 FROM (SELECT next_attempt_at FROM webhook_deliveries h
               WHERE h.endpoint_id = {ep} AND h.status IN ('pending', 'delivering')
               ORDER BY h.id LIMIT 1) head
WHERE head.next_attempt_at <= now() - make_interval(secs => {grace})
"""

RELEASE_SQL = f"""
UPDATE webhook_endpoints SET lease_owner = NULL, lease_until = NULL
WHERE id = %(e)s AND lease_owner = %(o)s
  AND (%(force)s OR NOT EXISTS ({HEAD_DUE.format(ep="%(e)s", grace="0")}))
RETURNING 1
"""

SWEEP_SQL = f"""
SELECT e.id FROM webhook_endpoints e
WHERE e.id IN (SELECT DISTINCT endpoint_id FROM webhook_deliveries
               WHERE status IN ('pending', 'delivering')
                 AND next_attempt_at <= now() - make_interval(secs => %(grace)s))
  AND e.status = 'active' AND (e.lease_until IS NULL OR e.lease_until < now())
  AND EXISTS ({HEAD_DUE.format(ep="e.id", grace="%(grace)s")})
LIMIT %(n)s
"""


def _endpoint(row: Sequence[Any]) -> Endpoint:
    preds, secrets = row[6], row[7]
    if isinstance(preds, str):
        preds = json.loads(preds)
    if isinstance(secrets, str):
        secrets = json.loads(secrets)
    return Endpoint(
        id=row[0], tenant_id=row[1], url=row[2], description=row[3], event_types=list(row[4] or []),
        entity_ids=list(row[5] or []), predicates=preds, secrets=secrets, status=row[8],
        disabled_reason=row[9], start_position=int(row[10]), created_at=row[11], updated_at=row[12],
    )  # fmt: skip


def _delivery(row: Sequence[Any]) -> Delivery:
    return Delivery(*row)


class WebhookStore(AutocommitStore):
    # -- endpoints ----------------------------------------------------------------------------------
    def create_endpoint(
        self,
        tenant_id: str,
        url: str,
        secret: str,
        description: str = "",
        event_types: Iterable[str] = (),
        entity_ids: Iterable[str] = (),
        predicates: list[dict[str, Any]] | None = None,
    ) -> Endpoint:
        """A new endpoint receives the events the relay has not passed yet: its watermark (every
        position at or below it is relayed or never exists), not the head position -- a transaction
        holding a lower position may commit after the endpoint is created and must not be skipped."""
        row = self._one(
            f"""INSERT INTO webhook_endpoints (id, tenant_id, url, description, event_types, entity_ids,
                    predicates, secrets, start_position)
                VALUES (%(id)s, %(t)s, %(url)s, %(desc)s, %(types)s, %(ids)s, %(preds)s::jsonb,
                        %(sec)s::jsonb,
                        COALESCE((SELECT watermark FROM projection_checkpoints WHERE name = 'webhook_relay'),
                                 (SELECT max(position) FROM events), 0))
                RETURNING {_EP_COLS}""",
            {
                "id": "ep_" + uuid.uuid4().hex[:20], "t": tenant_id, "url": url, "desc": description,
                "types": list(event_types), "ids": list(entity_ids),
                "preds": json.dumps(normalize_predicates(predicates)),
                "sec": json.dumps([{"secret": secret, "expires_at": None}]),
            },
        )  # fmt: skip
        return _endpoint(row)

    def get_endpoint(self, tenant_id: str | None, endpoint_id: str) -> Endpoint | None:
        sql = f"SELECT {_EP_COLS} FROM webhook_endpoints WHERE id = %(id)s"
        if tenant_id is not None:
            sql += " AND tenant_id = %(t)s"
        row = self._one(sql, {"id": endpoint_id, "t": tenant_id})
        return _endpoint(row) if row else None

    def list_endpoints(self, tenant_id: str) -> list[Endpoint]:
        rows = self._all(
            f"SELECT {_EP_COLS} FROM webhook_endpoints WHERE tenant_id = %(t)s ORDER BY created_at, id",
            {"t": tenant_id},
        )
        return [_endpoint(r) for r in rows]

    def active_endpoints(self) -> list[Endpoint]:
        rows = self._all(f"SELECT {_EP_COLS} FROM webhook_endpoints WHERE status = 'active'", {})
        return [_endpoint(r) for r in rows]

    def delete_endpoint(self, tenant_id: str, endpoint_id: str) -> bool:
        row = self._one(
            "DELETE FROM webhook_endpoints WHERE id = %(id)s AND tenant_id = %(t)s RETURNING 1",
            {"id": endpoint_id, "t": tenant_id},
        )
        return row is not None

    def set_status(self, endpoint_id: str, status: str, reason: str | None = None) -> None:
        self._one(
            "UPDATE webhook_endpoints SET status = %(s)s, disabled_reason = %(r)s, updated_at = now() "
            "WHERE id = %(id)s RETURNING 1",
            {"id": endpoint_id, "s": status, "r": reason},
        )

    def rotate_secret(
        self, tenant_id: str, endpoint_id: str, new_secret: str, grace_s: float
    ) -> Endpoint | None:
        """``new_secret`` becomes current; the others keep signing for ``grace_s`` seconds."""
        ep = self.get_endpoint(tenant_id, endpoint_id)
        if ep is None:
            return None
        expires = (datetime.now(UTC) + timedelta(seconds=grace_s)).isoformat()
        now = datetime.now(UTC)
        kept = [
            {"secret": s["secret"], "expires_at": s.get("expires_at") or expires}
            for s in ep.secrets
            if s.get("expires_at") is None or datetime.fromisoformat(s["expires_at"]) > now
        ]
        secrets = [{"secret": new_secret, "expires_at": None}, *kept]
        row = self._one(
            f"UPDATE webhook_endpoints SET secrets = %(s)s::jsonb, updated_at = now() "
            f"WHERE id = %(id)s AND tenant_id = %(t)s RETURNING {_EP_COLS}",
            {"id": endpoint_id, "t": tenant_id, "s": json.dumps(secrets)},
        )
        return _endpoint(row) if row else None

    # -- deliveries (outbox) --------------------------------------------------------------------------
    def insert_deliveries(self, conn: Connection, rows: list[dict[str, Any]]) -> set[str]:
        """Insert in the caller's transaction (idempotent on (endpoint, dedup_key)); returns the endpoint
        ids that got a new delivery. Rows: message_id?, tenant_id, endpoint_id, kind, dedup_key,
        event_id?, position?, event_type, body. Rows for deleted endpoints are dropped."""
        if not rows:
            return set()
        for r in rows:
            r.setdefault("message_id", stable_message_id(r["endpoint_id"], r["dedup_key"]))
            r.setdefault("event_id", None)
            r.setdefault("position", None)
        result = conn.exec_driver_sql(INSERT_DELIVERIES_SQL, {"rows": json.dumps(rows)}).all()
        return {r[0] for r in result}

    def add_delivery(
        self,
        endpoint_id: str,
        tenant_id: str,
        payload: dict[str, Any] | str,
        kind: str,
        event_type: str,
        dedup_key: str | None = None,
        conn: Connection | None = None,
    ) -> Delivery | None:
        """Queue one delivery of an arbitrary payload (tests, alerts). With ``conn`` it commits with the
        caller's transaction (outbox); ``dedup_key`` makes it idempotent. None if the endpoint is gone
        or the key was used before."""
        body = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
        key = dedup_key or f"{kind}:{uuid.uuid4().hex}"
        row = {
            "tenant_id": tenant_id, "endpoint_id": endpoint_id, "kind": kind, "dedup_key": key,
            "event_type": event_type, "body": body, "message_id": stable_message_id(endpoint_id, key),
        }  # fmt: skip
        if conn is not None:
            if not self.insert_deliveries(conn, [row]):
                return None
            got = conn.exec_driver_sql(
                f"SELECT {_DL_COLS} FROM webhook_deliveries WHERE message_id = %(m)s",
                {"m": row["message_id"]},
            ).first()
            return _delivery(got) if got else None
        with self.engine.begin() as own:
            return self.add_delivery(endpoint_id, tenant_id, body, kind, event_type, dedup_key, own)

    def list_deliveries(
        self,
        tenant_id: str,
        endpoint_id: str,
        limit: int = 50,
        status: str | None = None,
        before_id: int | None = None,
        attempts: bool = True,
    ) -> list[Delivery]:
        clauses = ["tenant_id = %(t)s", "endpoint_id = %(e)s"]
        params: dict[str, Any] = {"t": tenant_id, "e": endpoint_id, "n": limit}
        if status:
            clauses.append("status = %(s)s")
            params["s"] = status
        if before_id:
            clauses.append("id < %(b)s")
            params["b"] = before_id
        where = " AND ".join(clauses)
        sql = f"SELECT {_DL_COLS} FROM webhook_deliveries WHERE {where} ORDER BY id DESC LIMIT %(n)s"
        with self._ac.connect() as conn:
            out = [_delivery(r) for r in conn.exec_driver_sql(sql, params).all()]
            if attempts and out:
                by_id = {d.id: d for d in out}
                for a in conn.exec_driver_sql(
                    "SELECT delivery_id, attempt, started_at, latency_ms, status_code, outcome, error, "
                    "response_excerpt, retry_at FROM webhook_attempts WHERE delivery_id = ANY(%(ids)s) "
                    "ORDER BY delivery_id, attempt, id",
                    {"ids": list(by_id)},
                ).all():
                    by_id[a[0]].attempt_log.append({
                        "attempt": a[1], "started_at": a[2].isoformat(),
                        "latency_ms": None if a[3] is None else round(a[3], 2), "status_code": a[4],
                        "outcome": a[5], "error": a[6], "response_excerpt": a[7],
                        "retry_at": a[8].isoformat() if a[8] else None,
                    })  # fmt: skip
        return out

    # -- draining (workers) -------------------------------------------------------------------------
    def session(self) -> AbstractContextManager[psycopg.Connection[Any]]:
        """One pooled psycopg connection in autocommit for a whole drain (the hot path skips
        SQLAlchemy's execution layer, as connectors/event_store.py does)."""
        return pooled_psycopg(self.engine)

    @staticmethod
    def _q(pg: psycopg.Connection[Any], sql: str, params: dict[str, Any]) -> Any:
        return pg.execute(sql, params).fetchone()  # type: ignore[arg-type]

    def acquire(
        self, pg: psycopg.Connection[Any], endpoint_id: str, owner: str, lease_s: float
    ) -> Endpoint | None:
        row = self._q(pg, ACQUIRE_SQL, {"e": endpoint_id, "o": owner, "l": lease_s})
        return _endpoint(row) if row else None

    def open_deliveries(
        self, pg: psycopg.Connection[Any], endpoint_id: str, limit: int
    ) -> list[OpenDelivery]:
        rows = pg.execute(OPEN_SQL, {"e": endpoint_id, "n": limit}).fetchall()  # type: ignore[arg-type]
        return [OpenDelivery(int(r[0]), r[1], r[2], r[3], int(r[4]), float(r[5])) for r in rows]

    def start_attempt(
        self, pg: psycopg.Connection[Any], endpoint_id: str, owner: str, delivery_id: int, lease_s: float
    ) -> int | None:
        """Attempt number, or None when the lease was lost (or the delivery is no longer open)."""
        row = self._q(pg, START_SQL, {"e": endpoint_id, "o": owner, "d": delivery_id, "l": lease_s})
        return int(row[0]) if row else None

    def finish_attempt(
        self,
        pg: psycopg.Connection[Any],
        delivery_id: int,
        status: str,
        outcome: str,
        started: datetime,
        latency_ms: float | None,
        code: int | None = None,
        error: str | None = None,
        excerpt: str | None = None,
        delay_s: float | None = None,
    ) -> None:
        pg.execute(
            FINISH_SQL,  # type: ignore[arg-type]
            {
                "d": delivery_id, "status": status, "outcome": outcome, "started": started,
                "latency": latency_ms, "code": code, "err": error, "excerpt": excerpt, "delay": delay_s,
            },
        )  # fmt: skip

    def release(self, pg: psycopg.Connection[Any], endpoint_id: str, owner: str, force: bool = False) -> bool:
        """Give the lease up unless the endpoint's head delivery is due (then the caller keeps going)."""
        return self._q(pg, RELEASE_SQL, {"e": endpoint_id, "o": owner, "force": force}) is not None

    def disable(self, pg: psycopg.Connection[Any], endpoint_id: str, reason: str) -> None:
        pg.execute(
            "UPDATE webhook_endpoints SET status = 'disabled', disabled_reason = %(r)s, updated_at = now() "
            "WHERE id = %(id)s",
            {"id": endpoint_id, "r": reason},
        )

    def due_endpoints(self, grace_s: float, limit: int = 1000) -> list[str]:
        """Endpoints whose head delivery has been due for ``grace_s`` and that nobody is draining."""
        return [r[0] for r in self._all(SWEEP_SQL, {"grace": grace_s, "n": limit})]

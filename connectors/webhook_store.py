"""Webhook endpoints, deliveries (the outbox the workers drain) and the attempt log, in Postgres; the
drain's lease protocol and the relay's leadership lock.

Order: deliveries to one endpoint go out by ascending ``id``; the relay inserts event deliveries in
position order, so an endpoint never receives position N+1 before N is delivered or exhausted.
Exclusivity: one drainer per endpoint, by a lease on the endpoint row that expires if its holder dies.
What a subscription matches and what is sent is readmodels/webhooks.py.
Signing secrets are stored encrypted (connectors/secret_box.py): sealed on write, opened on read.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from sqlalchemy.engine import Connection, Engine

from connectors import tracing
from connectors.checkpoints import CheckpointStore
from connectors.database import AutocommitStore, pooled_psycopg
from connectors.secret_box import ResealReport, SecretBox, key_id_of
from connectors.tailer import TailCursor
from readmodels.webhooks import Delivery, Endpoint, normalize_predicates, rotated_secrets

log = logging.getLogger("agentflow.webhooks")


@dataclass(frozen=True)
class OpenDelivery:
    id: int
    message_id: str
    body: str
    status: str
    attempts: int
    wait_s: float  # <= 0 when due
    traceparent: str | None = None  # the event's, when tracing is on (connectors/tracing.py)


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

# with tracing on: also the traceparent of the delivered event, so the attempt joins the command's trace
OPEN_TRACED_SQL = """
SELECT d.id, d.message_id, d.body, d.status, d.attempts,
       extract(epoch FROM d.next_attempt_at - now())::float8,
       (SELECT e.metadata->>'traceparent' FROM events e WHERE e.position = d.position)
FROM webhook_deliveries d WHERE d.endpoint_id = %(e)s AND d.status IN ('pending', 'delivering')
ORDER BY d.id LIMIT %(n)s
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


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _endpoint(row: Sequence[Any], box: SecretBox) -> Endpoint:
    # a secret still in plaintext (written before encryption at rest, until start-up seals it) is read
    secrets = [{**s, "secret": box.open(s["secret"], allow_plaintext=True)} for s in _json(row[7])]
    return Endpoint(
        id=row[0], tenant_id=row[1], url=row[2], description=row[3], event_types=list(row[4] or []),
        entity_ids=list(row[5] or []), predicates=_json(row[6]), secrets=secrets, status=row[8],
        disabled_reason=row[9], start_position=int(row[10]), created_at=row[11], updated_at=row[12],
    )  # fmt: skip


def _delivery(row: Sequence[Any]) -> Delivery:
    return Delivery(*row)


def secret_key_census(engine: Engine) -> dict[str, int]:
    """Stored signing secrets per key id ("plaintext" for those not encrypted yet); needs no key."""
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT s->>'secret' FROM webhook_endpoints, jsonb_array_elements(secrets) AS s"
        ).all()
    out: dict[str, int] = {}
    for (value,) in rows:
        kid = key_id_of(str(value)) or "plaintext"
        out[kid] = out.get(kid, 0) + 1
    return out


class WebhookStore(AutocommitStore):
    """``box`` encrypts and decrypts the signing secrets; a store without one (e.g. an alert store that
    only queues deliveries) refuses every call that reads or writes an endpoint's secrets."""

    def __init__(self, engine: Engine, box: SecretBox | None = None) -> None:
        super().__init__(engine)
        self.checkpoints = CheckpointStore(engine)
        self._box = box

    @property
    def box(self) -> SecretBox:
        if self._box is None:
            raise RuntimeError("this WebhookStore has no SecretBox: endpoint secrets are out of its reach")
        return self._box

    def _ep(self, row: Sequence[Any]) -> Endpoint:
        return _endpoint(row, self.box)

    def _sealed(self, secrets: Sequence[dict[str, Any]]) -> str:
        return json.dumps([{**s, "secret": self.box.seal(str(s["secret"]))} for s in secrets])

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
                "sec": self._sealed([{"secret": secret, "expires_at": None}]),
            },
        )  # fmt: skip
        return self._ep(row)

    def get_endpoint(self, tenant_id: str | None, endpoint_id: str) -> Endpoint | None:
        sql = f"SELECT {_EP_COLS} FROM webhook_endpoints WHERE id = %(id)s"
        if tenant_id is not None:
            sql += " AND tenant_id = %(t)s"
        row = self._one(sql, {"id": endpoint_id, "t": tenant_id})
        return self._ep(row) if row else None

    def list_endpoints(self, tenant_id: str) -> list[Endpoint]:
        rows = self._all(
            f"SELECT {_EP_COLS} FROM webhook_endpoints WHERE tenant_id = %(t)s ORDER BY created_at, id",
            {"t": tenant_id},
        )
        return [self._ep(r) for r in rows]

    def active_endpoints(self) -> list[Endpoint]:
        rows = self._all(f"SELECT {_EP_COLS} FROM webhook_endpoints WHERE status = 'active'", {})
        return [self._ep(r) for r in rows]

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
        secrets = rotated_secrets(ep.secrets, new_secret, grace_s, datetime.now(UTC))
        row = self._one(
            f"UPDATE webhook_endpoints SET secrets = %(s)s::jsonb, updated_at = now() "
            f"WHERE id = %(id)s AND tenant_id = %(t)s RETURNING {_EP_COLS}",
            {"id": endpoint_id, "t": tenant_id, "s": self._sealed(secrets)},
        )
        return self._ep(row) if row else None

    def reseal_secrets(self, rotate: bool = False) -> ResealReport:
        """Encrypt every signing secret still stored in plaintext; with ``rotate`` also re-encrypt those
        under an older key with the newest one. An endpoint is rewritten only if its secrets did not
        change since they were read (else it is read again), so no lock is held across endpoints and a
        concurrent rotation is never undone. Counts what is stored afterwards, per key."""
        report = ResealReport()
        box = self.box
        for endpoint_id, raw in self._all("SELECT id, secrets FROM webhook_endpoints ORDER BY id", {}):
            for _ in range(10):
                secrets = _json(raw)
                values = [str(s["secret"]) for s in secrets]
                fresh = box.reseal_all(values, rotate)
                if fresh is None:
                    report.unreadable.append(f"webhook endpoint {endpoint_id}")
                elif fresh != values:
                    done = self._one(
                        "UPDATE webhook_endpoints SET secrets = %(new)s::jsonb "
                        "WHERE id = %(id)s AND secrets = %(old)s::jsonb RETURNING 1",
                        {
                            "id": endpoint_id, "old": json.dumps(secrets),
                            "new": json.dumps([{**s, "secret": v}
                                               for s, v in zip(secrets, fresh, strict=True)]),
                        },
                    )  # fmt: skip
                    if done is None:  # changed meanwhile: read it again
                        row = self._one(
                            "SELECT secrets FROM webhook_endpoints WHERE id = %(id)s", {"id": endpoint_id}
                        )
                        if row is None:  # deleted
                            break
                        raw = row[0]
                        continue
                    report.note_resealed(values, fresh)
                    values = fresh
                for v in values:
                    report.count(v)
                break
        return report

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

    def queue_deliveries(self, rows: list[dict[str, Any]]) -> set[str]:
        """``insert_deliveries`` in a transaction of its own."""
        with self.engine.begin() as conn:
            return self.insert_deliveries(conn, rows)

    def relay_batch(
        self, rows: list[dict[str, Any]], checkpoint: str, cursor: TailCursor | None, watermark: int
    ) -> set[str]:
        """The relay's turn, in ONE transaction: the deliveries of the events it handled and its
        checkpoint (a crash before the commit re-reads the events; the insert is idempotent)."""
        with self.engine.begin() as conn:
            touched = self.insert_deliveries(conn, rows)
            self.checkpoints.save(checkpoint, cursor, watermark, conn=conn)
        return touched

    def count_replayed(self, endpoint_id: str, replay_id: str) -> int:
        row = self._one(
            "SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = %(e)s AND kind = 'replay' "
            "AND starts_with(dedup_key, %(p)s)",
            {"e": endpoint_id, "p": f"replay:{replay_id}:"},
        )
        return int(row[0])

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
        return self._ep(row) if row else None

    def open_deliveries(
        self, pg: psycopg.Connection[Any], endpoint_id: str, limit: int
    ) -> list[OpenDelivery]:
        sql = OPEN_TRACED_SQL if tracing.active() else OPEN_SQL
        rows = pg.execute(sql, {"e": endpoint_id, "n": limit}).fetchall()  # type: ignore[call-overload]
        return [OpenDelivery(int(r[0]), r[1], r[2], r[3], int(r[4]), float(r[5]), *r[6:]) for r in rows]

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

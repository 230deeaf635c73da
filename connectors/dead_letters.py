"""Dead-letter store (Postgres ``dead_letters``): events a pipeline could not parse, validate or project.

Inserts are idempotent on (pipeline, event_id, stage): pipelines deliver at least once, so the same
failure may arrive twice. A failure without an event id (an unparseable record) is keyed by a digest
of its raw record instead, so its redeliveries collapse too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection, Engine

INSERT_SQL = """
INSERT INTO dead_letters (tenant_id, pipeline, stage, reason, event_id, position, event_type, record)
VALUES (%(tenant_id)s, %(pipeline)s, %(stage)s, %(reason)s, %(event_id)s, %(position)s, %(event_type)s,
        %(record)s::jsonb)
ON CONFLICT (pipeline, event_id, stage) DO NOTHING
"""

SELECT_COLUMNS = (
    "id, tenant_id, pipeline, stage, reason, event_id, position, event_type, record, status, created_at"
)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    pipeline: str
    stage: str
    reason: str
    event_id: str | None = None
    position: int | None = None
    tenant_id: str | None = None
    event_type: str | None = None
    record: Any = None
    status: str = "failed"
    id: int | None = None
    created_at: datetime | None = field(default=None, compare=False)

    def dedup_id(self) -> str:
        """The event id, or ``record:<sha256 of the canonical record>`` when there is none."""
        if self.event_id:
            return self.event_id
        raw = json.dumps(self.record, sort_keys=True, default=str, separators=(",", ":"))
        return "record:" + hashlib.sha256(raw.encode()).hexdigest()


def _params(letter: DeadLetter) -> dict[str, Any]:
    return {
        "tenant_id": letter.tenant_id,
        "pipeline": letter.pipeline,
        "stage": letter.stage,
        "reason": letter.reason,
        "event_id": letter.dedup_id(),
        "position": letter.position,
        "event_type": letter.event_type,
        "record": json.dumps(letter.record, default=str),
    }


def _row(r: Sequence[Any]) -> DeadLetter:
    record = r[8]
    if isinstance(record, str):
        record = json.loads(record)
    return DeadLetter(
        id=int(r[0]),
        tenant_id=r[1],
        pipeline=r[2],
        stage=r[3],
        reason=r[4],
        event_id=r[5],
        position=None if r[6] is None else int(r[6]),
        event_type=r[7],
        record=record,
        status=r[9],
        created_at=r[10],
    )


class DeadLetterStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, letters: Sequence[DeadLetter], conn: Connection | None = None) -> int:
        """Insert (idempotent); returns how many were new. With ``conn`` it joins the caller's transaction."""
        if not letters:
            return 0
        if conn is None:
            with self.engine.begin() as own:
                return self.add(letters, own)
        added = 0
        for letter in letters:  # one round trip each; dead letters are rare
            added += conn.exec_driver_sql(INSERT_SQL, _params(letter)).rowcount or 0
        return added

    def list(self, tenant_id: str | None, limit: int = 100) -> list[DeadLetter]:
        """Newest first; ``tenant_id=None`` lists every tenant's (and tenant-less) dead letters."""
        where = "" if tenant_id is None else "WHERE tenant_id = %(t)s"
        with self.engine.connect() as conn:
            rows = conn.exec_driver_sql(
                f"SELECT {SELECT_COLUMNS} FROM dead_letters {where} ORDER BY id DESC LIMIT %(n)s",
                {"t": tenant_id, "n": max(0, int(limit))},
            ).all()
        return [_row(r) for r in rows]

    def count(self, tenant_id: str | None = None, pipeline: str | None = None) -> int:
        clauses, params = [], {}
        if tenant_id is not None:
            clauses.append("tenant_id = %(t)s")
            params["t"] = tenant_id
        if pipeline is not None:
            clauses.append("pipeline = %(p)s")
            params["p"] = pipeline
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self.engine.connect() as conn:
            return int(
                conn.exec_driver_sql(f"SELECT count(*) FROM dead_letters {where}", params).scalar_one()
            )

"""Dead-letter store (Postgres ``dead_letters``): events a pipeline could not parse, validate or project.
The record and its status machine are commands/dead_letters.py (imported here for the stages that file
dead letters).

Inserts are idempotent on (pipeline, event_id, stage): pipelines deliver at least once, so the same
failure may arrive twice. A failure without an event id (an unparseable record) is keyed by a digest
of its raw record instead, so its redeliveries collapse too.

Statuses (migration 0005): ``failed`` -> ``replay_pending`` -> ``replayed``, or ``failed`` ->
``dismissed``; ``replay_pending`` may fall back to ``failed`` when the append fails. Every status
change is one conditional UPDATE (``WHERE status IN <allowed sources>``, see TRANSITIONS), so two
operators racing on one dead letter cannot both move it. commands/dead_letter_replay.py drives the
replay.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection, Engine

from commands.dead_letters import (
    DISMISSED,
    FAILED,
    FINAL,
    PIPELINES,
    REASON_CLASSES,
    REPLAY_PENDING,
    REPLAYED,
    STATUSES,
    TRANSITIONS,
    DeadLetter,
    InvalidTransition,
    can_transition,
    reason_class,
)
from connectors.prometheus_metrics import DEAD_LETTERS

__all__ = [
    "DISMISSED", "FAILED", "FINAL", "PIPELINES", "REASON_CLASSES", "REPLAYED", "REPLAY_PENDING", "STATUSES",
    "TRANSITIONS", "DeadLetter", "DeadLetterFilter", "DeadLetterStore", "InvalidTransition", "can_transition",
    "reason_class",
]  # fmt: skip

INSERT_SQL = """
INSERT INTO dead_letters (tenant_id, pipeline, stage, reason, event_id, position, event_type, record)
VALUES (%(tenant_id)s, %(pipeline)s, %(stage)s, %(reason)s, %(event_id)s, %(position)s, %(event_type)s,
        %(record)s::jsonb)
ON CONFLICT (pipeline, event_id, stage) DO NOTHING
"""

SELECT_COLUMNS = (
    "id, tenant_id, pipeline, stage, reason, event_id, position, event_type, record, status, created_at, "
    "updated_at, replayed_at, dismissed_at, replay_position, replay_event_id, corrected_data, status_note"
)

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


def _json_col(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _row(r: Sequence[Any]) -> DeadLetter:
    record = _json_col(r[8])
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
        updated_at=r[11],
        replayed_at=r[12],
        dismissed_at=r[13],
        replay_position=None if r[14] is None else int(r[14]),
        replay_event_id=r[15],
        corrected_data=_json_col(r[16]),
        status_note=r[17],
    )


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    status: str | None = None
    stage: str | None = None
    pipeline: str | None = None
    event_type: str | None = None
    since: datetime | None = None

    def where(self, tenant_id: str | None) -> tuple[list[str], dict[str, Any]]:
        clauses: list[str] = []
        params: dict[str, Any] = {}
        if tenant_id is not None:
            clauses.append("tenant_id = %(t)s")
            params["t"] = tenant_id
        for col in ("status", "stage", "pipeline", "event_type"):
            value = getattr(self, col)
            if value is not None:
                clauses.append(f"{col} = %({col})s")
                params[col] = value
        if self.since is not None:
            clauses.append("created_at >= %(since)s")
            params["since"] = self.since
        return clauses, params


def _reason_class_sql() -> str:
    """REASON_CLASSES as a SQL CASE over the first problem of ``reason`` (stats group by it)."""
    first = "split_part(reason, '; ', 1)"
    whens = " ".join(
        f"WHEN strpos({first}, '{needle}') > 0 THEN '{cls}'" for needle, cls in REASON_CLASSES
    )
    return f"CASE WHEN stage = 'parse' THEN 'parse' {whens} ELSE 'other' END"


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
            new = conn.exec_driver_sql(INSERT_SQL, _params(letter)).rowcount or 0
            DEAD_LETTERS.labels(letter.pipeline, letter.stage).inc(new)
            added += new
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

    def page(
        self,
        tenant_id: str | None,
        filters: DeadLetterFilter | None = None,
        limit: int = 100,
        before_id: int | None = None,
    ) -> builtins.list[DeadLetter]:
        """Newest first (by id); ``before_id`` is the keyset cursor (the last id of the previous page)."""
        clauses, params = (filters or DeadLetterFilter()).where(tenant_id)
        if before_id is not None:
            clauses.append("id < %(before)s")
            params["before"] = before_id
        params["n"] = max(0, int(limit))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self.engine.connect() as conn:
            rows = conn.exec_driver_sql(
                f"SELECT {SELECT_COLUMNS} FROM dead_letters {where} ORDER BY id DESC LIMIT %(n)s", params
            ).all()
        return [_row(r) for r in rows]

    def get(self, tenant_id: str | None, letter_id: int, conn: Connection | None = None) -> DeadLetter | None:
        """One dead letter; ``tenant_id=None`` finds it in any tenant."""
        sql = f"SELECT {SELECT_COLUMNS} FROM dead_letters WHERE id = %(id)s"
        params: dict[str, Any] = {"id": letter_id}
        if tenant_id is not None:
            sql += " AND tenant_id = %(t)s"
            params["t"] = tenant_id
        if conn is not None:
            row = conn.exec_driver_sql(sql, params).first()
        else:
            with self.engine.connect() as own:
                row = own.exec_driver_sql(sql, params).first()
        return _row(row) if row is not None else None

    def at_positions(self, tenant_id: str, positions: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Why each of these event positions was dead-lettered (readmodels.ports.DeadLetterLookup:
        lineage), ``{position: {pipeline, stage, reason}}`` for those that were."""
        if not positions:
            return {}
        with self.engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT position, pipeline, stage, reason FROM dead_letters "
                "WHERE tenant_id = %(t)s AND position = ANY(%(p)s)",
                {"t": tenant_id, "p": list(positions)},
            ).all()
        return {int(r[0]): {"pipeline": r[1], "stage": r[2], "reason": r[3]} for r in rows}

    def stats(self, tenant_id: str | None, filters: DeadLetterFilter | None = None) -> dict[str, Any]:
        """Counts: total, by status, stage, pipeline, reason class (and event type)."""
        clauses, params = (filters or DeadLetterFilter()).where(tenant_id)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = (
            f"SELECT status, stage, pipeline, {_reason_class_sql()} AS cls, COALESCE(event_type, ''), "
            f"count(*) FROM dead_letters {where} GROUP BY 1, 2, 3, 4, 5"
        )
        with self.engine.connect() as conn:
            rows = conn.exec_driver_sql(sql, params).all()
        out: dict[str, Any] = {
            "total": 0,
            "by_status": dict.fromkeys(STATUSES, 0),
            "by_stage": {}, "by_pipeline": {}, "by_reason_class": {}, "by_event_type": {},
        }  # fmt: skip
        for status, stage, pipeline, cls, event_type, n in rows:
            n = int(n)
            out["total"] += n
            for key, value in (("by_status", status), ("by_stage", stage), ("by_pipeline", pipeline),
                               ("by_reason_class", cls), ("by_event_type", event_type or None)):
                if value is not None:
                    out[key][value] = out[key].get(value, 0) + n
        return out

    def transition(
        self,
        letter_id: int,
        target: str,
        tenant_id: str | None = None,
        note: str | None = None,
        replay_position: int | None = None,
        replay_event_id: str | None = None,
        corrected_data: Any = None,
        conn: Connection | None = None,
    ) -> DeadLetter:
        """Move one dead letter to ``target`` if its status allows (TRANSITIONS); raises
        InvalidTransition otherwise (with the current status, None when it does not exist)."""
        sources = TRANSITIONS.get(target)
        if sources is None:
            raise ValueError(f"unknown target status {target!r}")
        if conn is None:
            with self.engine.begin() as own:
                return self.transition(letter_id, target, tenant_id, note, replay_position,
                                       replay_event_id, corrected_data, own)  # fmt: skip
        sets = ["status = %(target)s", "updated_at = now()", "status_note = %(note)s"]
        params: dict[str, Any] = {"id": letter_id, "target": target, "sources": sorted(sources), "note": note}
        if target == REPLAYED:
            sets += ["replayed_at = now()", "replay_position = %(rp)s", "replay_event_id = %(re)s"]
            params.update(rp=replay_position, re=replay_event_id)
        if target == DISMISSED:
            sets.append("dismissed_at = now()")
        if corrected_data is not None:
            sets.append("corrected_data = %(cd)s::jsonb")
            params["cd"] = json.dumps(corrected_data, default=str)
        sql = (
            f"UPDATE dead_letters SET {', '.join(sets)} WHERE id = %(id)s AND status = ANY(%(sources)s)"
        )
        if tenant_id is not None:
            sql += " AND tenant_id = %(t)s"
            params["t"] = tenant_id
        row = conn.exec_driver_sql(sql + f" RETURNING {SELECT_COLUMNS}", params).first()
        if row is None:
            current = self.get(tenant_id, letter_id, conn)
            raise InvalidTransition(letter_id, current.status if current else None, target)
        return _row(row)

    def parked(self, pipeline: str, stage: str, source: str, limit: int = 100) -> builtins.list[DeadLetter]:
        """Failed letters of one legacy source at one stage from the last hour, oldest first (for
        automatic retries; older ones wait for an operator's replay)."""
        with self.engine.connect() as conn:
            rows = conn.exec_driver_sql(
                f"SELECT {SELECT_COLUMNS} FROM dead_letters WHERE pipeline = %(p)s AND stage = %(s)s "
                "AND status = 'failed' AND record->>'source' = %(src)s "
                "AND created_at > now() - interval '1 hour' ORDER BY id LIMIT %(n)s",
                {"p": pipeline, "s": stage, "src": source, "n": limit},
            ).all()
        return [_row(r) for r in rows]

    def waiting_for(self, pipeline: str, source: str, entity_id: str) -> builtins.list[DeadLetter]:
        """Failed letters of one legacy source that wait for the entity ``entity_id``, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.exec_driver_sql(
                f"SELECT {SELECT_COLUMNS} FROM dead_letters WHERE pipeline = %(p)s AND status = 'failed' "
                "AND record->>'source' = %(src)s AND record->>'waits_for' = %(e)s ORDER BY id",
                {"p": pipeline, "src": source, "e": entity_id},
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

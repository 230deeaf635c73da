"""The control plane of legacy sources (Postgres ``cdc_sources``): declarations and capture status.

Declarations live in the event store's database so every process of a deployment sees the same set:
the embedded runtime and the distributed ingest consumer start and stop captures from it. A declaration's
connection password is stored encrypted (connectors/secret_box.py) and opened only to parse the spec.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine

from connectors.legacy.declaration import SourceSpec, parse_source
from connectors.secret_box import ResealReport, SecretBox, key_id_of

COLUMNS = (
    "name, kind, spec, created_at, state, records, applied, unchanged, dead_letters, events, schema_changes, "
    "last_position, last_commit_at, last_applied_at, last_event_position, last_schema_change, last_error, "
    "last_error_at, updated_at"
)


class SourceExists(Exception):
    pass


class SourceNotFound(LookupError):
    pass


def _password(declaration: dict[str, Any]) -> str | None:
    """The stored connection password of a declaration (sealed, or plaintext from before), if any."""
    connection = declaration.get("connection")
    value = connection.get("password") if isinstance(connection, dict) else None
    if value is None or isinstance(value, dict | list):
        return None  # none, or not a password parse_source accepts (it refuses the declaration)
    return str(value) or None  # a YAML number is a password too (parse_source takes str(value))


def _with_password(declaration: dict[str, Any], password: str) -> dict[str, Any]:
    return {**declaration, "connection": {**declaration["connection"], "password": password}}


@dataclass(frozen=True)
class SourceStatus:
    name: str
    kind: str
    declaration: dict[str, Any] = field(repr=False)  # as stored: its password encrypted
    created_at: datetime
    state: str
    records: int
    applied: int
    unchanged: int
    dead_letters: int
    events: int
    schema_changes: int
    last_position: str | None
    last_commit_at: datetime | None
    last_applied_at: datetime | None
    last_event_position: int | None
    last_schema_change: str | None
    last_error: str | None
    last_error_at: datetime | None
    updated_at: datetime
    box: SecretBox | None = field(default=None, repr=False, compare=False)

    def spec(self) -> SourceSpec:
        """The parsed declaration with its password decrypted (SecretKeyError, a ValueError, when the
        key that encrypted it is not configured here)."""
        declaration = self.declaration
        if (stored := _password(declaration)) is not None:
            if self.box is None:
                raise ValueError(f"source {self.name}: no secret key to open its password")
            declaration = _with_password(declaration, self.box.open(stored, allow_plaintext=True))
        return parse_source(declaration)

    @property
    def lag_seconds(self) -> float | None:
        """Legacy commit -> applied here, for the last record (None before the first streamed one)."""
        if self.last_commit_at is None or self.last_applied_at is None:
            return None
        return max(0.0, (self.last_applied_at - self.last_commit_at).total_seconds())

    def public(self) -> dict[str, Any]:
        def iso(v: datetime | None) -> str | None:
            return v.isoformat() if v is not None else None

        try:
            declared: dict[str, Any] = self.spec().public()
        except ValueError as exc:  # e.g. its password_env is not set in this process
            declared = {"name": self.name, "kind": self.kind, "error": str(exc)}
        return {
            **declared, "state": self.state, "created_at": iso(self.created_at),
            "records": self.records, "applied": self.applied, "unchanged": self.unchanged,
            "dead_letters": self.dead_letters, "events": self.events, "schema_changes": self.schema_changes,
            "last_position": self.last_position, "last_commit_at": iso(self.last_commit_at),
            "last_applied_at": iso(self.last_applied_at), "lag_seconds": self.lag_seconds,
            "last_event_position": self.last_event_position, "last_schema_change": self.last_schema_change,
            "last_error": self.last_error, "last_error_at": iso(self.last_error_at),
            "updated_at": iso(self.updated_at),
        }  # fmt: skip


def _json(value: Any) -> Any:
    return value if isinstance(value, dict) else json.loads(value)


def _status(row: Sequence[Any], box: SecretBox) -> SourceStatus:
    return replace(SourceStatus(row[0], row[1], _json(row[2]), *row[3:]), box=box)


@dataclass
class BatchTally:
    """What one batch of change records did (added to the status row in one UPDATE)."""

    records: int = 0
    applied: int = 0
    unchanged: int = 0
    dead_letters: int = 0
    events: int = 0
    schema_changes: int = 0
    last_position: str | None = None
    last_commit_ms: int | None = None
    last_event_position: int | None = None
    last_schema_change: str | None = None
    snapshot: bool = False

    def add(self, outcome: Any) -> None:
        """Count one applied-or-unchanged record (an ingest Outcome)."""
        if outcome.applied:
            self.applied += 1
            self.events += outcome.events
            self.last_event_position = outcome.last_event_position or self.last_event_position
        else:
            self.unchanged += 1


def secret_key_census(engine: Engine) -> dict[str, int]:
    """Stored connection passwords per key id ("plaintext" for those not encrypted yet); needs no key."""
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT spec->'connection'->>'password' FROM cdc_sources "
            "WHERE coalesce(spec->'connection'->>'password', '') <> ''"
        ).all()
    out: dict[str, int] = {}
    for (value,) in rows:
        kid = key_id_of(str(value)) or "plaintext"
        out[kid] = out.get(kid, 0) + 1
    return out


class SourceRegistry:
    def __init__(self, engine: Engine, box: SecretBox) -> None:
        self.engine = engine
        self.box = box

    def add(self, declaration: dict[str, Any], replace: bool = False) -> SourceSpec:
        """Validate and store a declaration, its password encrypted; SourceSpecError when invalid,
        SourceExists when taken."""
        spec = parse_source(declaration)
        if (password := _password(declaration)) is not None:
            declaration = _with_password(declaration, self.box.seal(password))
        sql = (
            "INSERT INTO cdc_sources (name, kind, spec) VALUES (%(n)s, %(k)s, %(s)s::jsonb) "
            + ("ON CONFLICT (name) DO UPDATE SET kind = EXCLUDED.kind, spec = EXCLUDED.spec, "
               "updated_at = now() "
               if replace else "ON CONFLICT (name) DO NOTHING ")
            + "RETURNING name"
        )
        with self.engine.begin() as conn:
            row = conn.exec_driver_sql(sql, {"n": spec.name, "k": spec.kind,
                                             "s": json.dumps(declaration)}).first()
        if row is None:
            raise SourceExists(f"source {spec.name} already exists (remove it first, or add with --replace)")
        return spec

    def remove(self, name: str) -> SourceStatus:
        with self.engine.begin() as conn:
            row = conn.exec_driver_sql(
                f"DELETE FROM cdc_sources WHERE name = %(n)s RETURNING {COLUMNS}", {"n": name}
            ).first()
        if row is None:
            raise SourceNotFound(f"no source {name!r}")
        return _status(row, self.box)

    def list(self) -> list[SourceStatus]:
        with self.engine.connect() as conn:
            rows = conn.exec_driver_sql(f"SELECT {COLUMNS} FROM cdc_sources ORDER BY name").all()
        return [_status(r, self.box) for r in rows]

    def get(self, name: str) -> SourceStatus:
        with self.engine.connect() as conn:
            row = conn.exec_driver_sql(
                f"SELECT {COLUMNS} FROM cdc_sources WHERE name = %(n)s", {"n": name}
            ).first()
        if row is None:
            raise SourceNotFound(f"no source {name!r}")
        return _status(row, self.box)

    def reseal_secrets(self, rotate: bool = False) -> ResealReport:
        """Encrypt every connection password still stored in plaintext; with ``rotate`` also re-encrypt
        those under an older key with the newest one. A declaration is rewritten only if it did not
        change since it was read (else it is read again). Counts what is stored afterwards, per key."""
        report = ResealReport()
        box = self.box
        with self.engine.connect() as conn:
            names = [r[0] for r in conn.exec_driver_sql("SELECT name FROM cdc_sources ORDER BY name").all()]
        for name in names:
            for _ in range(10):
                with self.engine.begin() as conn:
                    row = conn.exec_driver_sql(
                        "SELECT spec FROM cdc_sources WHERE name = %(n)s", {"n": name}
                    ).first()
                    if row is None:
                        break
                    declaration = _json(row[0])
                    value = _password(declaration)
                    if value is None:
                        break
                    resealed = box.reseal_all([value], rotate)
                    if resealed is None:
                        report.unreadable.append(f"source {name}")
                    elif resealed != [value]:
                        [fresh] = resealed
                        done = conn.exec_driver_sql(
                            "UPDATE cdc_sources SET spec = %(new)s::jsonb "
                            "WHERE name = %(n)s AND spec = %(old)s::jsonb RETURNING 1",
                            {"n": name, "old": json.dumps(declaration),
                             "new": json.dumps(_with_password(declaration, fresh))},
                        ).first()
                        if done is None:
                            continue  # changed meanwhile: read it again
                        report.note_resealed([value], [fresh])
                        value = fresh
                    report.count(value)
                    break
        return report

    def record_batch(self, name: str, tally: BatchTally) -> None:
        commit_at = (datetime.fromtimestamp(tally.last_commit_ms / 1000, UTC)
                     if tally.last_commit_ms is not None else None)
        with self.engine.begin() as conn:
            conn.exec_driver_sql(
                """UPDATE cdc_sources SET
                    state = CASE WHEN %(snap)s THEN 'snapshot' ELSE 'streaming' END,
                    records = records + %(records)s, applied = applied + %(applied)s,
                    unchanged = unchanged + %(unchanged)s, dead_letters = dead_letters + %(dl)s,
                    events = events + %(events)s, schema_changes = schema_changes + %(sc)s,
                    last_position = COALESCE(%(pos)s, last_position),
                    last_commit_at = COALESCE(%(commit_at)s, last_commit_at),
                    last_applied_at = CASE WHEN %(records)s > 0 THEN now() ELSE last_applied_at END,
                    last_event_position = COALESCE(%(event_pos)s, last_event_position),
                    last_schema_change = COALESCE(%(ddl)s, last_schema_change),
                    last_error = NULL, updated_at = now()
                WHERE name = %(n)s""",
                {"n": name, "snap": tally.snapshot, "records": tally.records, "applied": tally.applied,
                 "unchanged": tally.unchanged, "dl": tally.dead_letters, "events": tally.events,
                 "sc": tally.schema_changes, "pos": tally.last_position, "commit_at": commit_at,
                 "event_pos": tally.last_event_position, "ddl": tally.last_schema_change},
            )

    def record_error(self, name: str, error: str) -> None:
        with self.engine.begin() as conn:
            conn.exec_driver_sql(
                "UPDATE cdc_sources SET state = 'error', last_error = %(e)s, last_error_at = now(), "
                "updated_at = now() WHERE name = %(n)s",
                {"n": name, "e": error[:2000]},
            )

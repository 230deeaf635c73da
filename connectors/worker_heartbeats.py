"""Worker heartbeats in Postgres (table ``worker_heartbeats``, migration 0009): one row per live
worker-fleet process, rewritten every few seconds, judged on the database's clock. Postgres rather
than Redis because every fleet process has the database, whichever broker it uses."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from connectors.database import AutocommitStore

TTL_S = 15.0  # a worker beats every 5 s: three missed beats and it is no longer listed
FORGET_S = 3600  # rows of workers gone this long are deleted


@dataclass(frozen=True)
class Beat:
    worker_id: str
    queues: list[str]
    info: dict[str, Any]
    age_s: float


class HeartbeatStore(AutocommitStore):
    def beat(self, worker_id: str, queues: list[str], info: dict[str, Any]) -> None:
        self._run(
            "WITH gone AS (DELETE FROM worker_heartbeats "
            "WHERE beat_at < now() - make_interval(secs => %(f)s)) "
            "INSERT INTO worker_heartbeats (worker_id, queues, info, beat_at) "
            "VALUES (%(w)s, %(q)s, %(i)s::jsonb, now()) ON CONFLICT (worker_id) DO UPDATE "
            "SET queues = EXCLUDED.queues, info = EXCLUDED.info, beat_at = EXCLUDED.beat_at",
            {"w": worker_id, "q": queues, "i": json.dumps(info), "f": FORGET_S},
        )

    def remove(self, worker_id: str) -> None:
        self._run("DELETE FROM worker_heartbeats WHERE worker_id = %(w)s", {"w": worker_id})

    def _run(self, sql: str, params: dict[str, Any]) -> None:
        with self._ac.connect() as conn:
            conn.exec_driver_sql(sql, params)

    def live(self, ttl_s: float = TTL_S) -> list[Beat]:
        rows = self._all(
            "SELECT worker_id, queues, info, extract(epoch FROM now() - beat_at)::float8 "
            "FROM worker_heartbeats WHERE beat_at > now() - make_interval(secs => %(t)s) ORDER BY worker_id",
            {"t": ttl_s},
        )
        return [Beat(r[0], list(r[1]), dict(r[2]), round(max(0.0, r[3]), 1)) for r in rows]

"""Projection checkpoints in Postgres (projection_checkpoints): tail cursor + applied watermark."""

from __future__ import annotations

from sqlalchemy.engine import Connection, Engine

from connectors.tailer import TailCursor

UPSERT_SQL = """
INSERT INTO projection_checkpoints (name, last_txid, last_position, watermark, updated_at)
VALUES (%(name)s, %(txid)s, %(pos)s, %(wm)s, now())
ON CONFLICT (name) DO UPDATE SET
    last_txid = EXCLUDED.last_txid,
    last_position = EXCLUDED.last_position,
    watermark = EXCLUDED.watermark,
    updated_at = EXCLUDED.updated_at
"""

WATERMARK_ONLY_SQL = """
INSERT INTO projection_checkpoints (name, watermark, updated_at)
VALUES (%(name)s, %(wm)s, now())
ON CONFLICT (name) DO UPDATE SET watermark = EXCLUDED.watermark, updated_at = EXCLUDED.updated_at
"""


class CheckpointStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def load(self, name: str) -> tuple[TailCursor | None, int]:
        """(cursor, watermark); (None, 0) when the projection never ran."""
        with self.engine.connect() as conn:
            row = conn.exec_driver_sql(
                "SELECT last_txid, last_position, watermark FROM projection_checkpoints WHERE name = %(n)s",
                {"n": name},
            ).first()
        if row is None:
            return None, 0
        cursor = TailCursor(int(row[0]), int(row[1])) if (row[0] or row[1]) else None
        return cursor, int(row[2])

    def save(
        self, name: str, cursor: TailCursor | None, watermark: int, conn: Connection | None = None
    ) -> None:
        """Upsert; with ``conn`` it joins the caller's transaction (rows and checkpoint commit together).
        ``cursor=None`` updates only the watermark."""
        if cursor is None:
            sql, params = WATERMARK_ONLY_SQL, {"name": name, "wm": watermark}
        else:
            sql = UPSERT_SQL
            params = {"name": name, "txid": cursor.txid, "pos": cursor.position, "wm": watermark}
        if conn is not None:
            conn.exec_driver_sql(sql, params)
            return
        with self.engine.begin() as own:
            own.exec_driver_sql(sql, params)

    def delete(self, name: str) -> None:
        """Forget a projection's progress (before a rebuild)."""
        with self.engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM projection_checkpoints WHERE name = %(n)s", {"n": name})

    def all(self) -> dict[str, tuple[TailCursor | None, int]]:
        with self.engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT name, last_txid, last_position, watermark FROM projection_checkpoints"
            ).all()
        return {
            r[0]: (TailCursor(int(r[1]), int(r[2])) if (r[1] or r[2]) else None, int(r[3])) for r in rows
        }

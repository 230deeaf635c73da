"""What the read side needs from storage; connectors/ implements these (and nothing here imports it).

``ReadModelStore`` is the ClickHouse read model (chdb or a server); ``EventHistory`` the parts of the
event store that time travel, timelines and lineage read; ``ChangeFeed`` and ``EventLog`` the reads of
the changelog and of the event stream's replay; ``DeadLetterLookup`` what lineage asks of the dead
letters; ``RejectionLog`` the rejected commands (error_rate counts them); ``ServingProgress`` and
``ReadProgress`` how far the serving read models are (the process runtime).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol

from domain.events import RecordedEvent
from projections.rows import Key, Row


class ReadModelStore(Protocol):
    database: str

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """A SELECT; ``{db}`` in the SQL stands for the store's database (code-supplied SQL only)."""
        ...

    def get_rows(self, table: str, keys: Iterable[Key]) -> dict[Key, Row]: ...

    def get_row(self, table: str, key: Key) -> Row | None: ...

    def select_rows(
        self, table: str, tenant_id: str, where: str = "", parameters: dict[str, Any] | None = None,
        order_by: str = "",
    ) -> list[Row]: ...

    def insert_rows(self, table: str, rows: Sequence[Row]) -> None: ...

    def scratch(self, tables: Sequence[str]) -> AbstractContextManager[ReadModelStore]:
        """A throwaway store with ``tables`` on the same engine, dropped on exit (time travel)."""
        ...


class EventHistory(Protocol):
    def load_stream(
        self, tenant_id: str, stream_type: str, stream_id: str, after_version: int = 0
    ) -> list[RecordedEvent]: ...

    def read_stream_until(
        self, tenant_id: str, stream_type: str, stream_id: str, until: datetime
    ) -> list[RecordedEvent]: ...

    def read_entity_events_until(
        self, tenant_id: str, entity_type: str, entity_id: str, until: datetime
    ) -> list[RecordedEvent]:
        """Every event that feeds one entity (a user: also their orders' and products' streams), as of
        ``until``."""
        ...

    def streams_touched(
        self, tenant_id: str, stream_type: str, since: datetime | None, until: datetime, limit: int
    ) -> list[RecordedEvent]:
        """Every event (occurred_at <= until, position order, at most ``limit``) of the streams of
        ``stream_type`` with an event in [since, until]; of every such stream when ``since`` is None."""
        ...

    def recorded_between(
        self, tenant_id: str, since: datetime | None, until: datetime, limit: int
    ) -> list[RecordedEvent]:
        """The tenant's events recorded in (since, until] (all up to ``until`` when since is None)."""
        ...

    def registrations(
        self, tenant_id: str, product_ids: Sequence[str], until: datetime, limit: int
    ) -> list[RecordedEvent]:
        """ProductRegistered of these products, up to ``until``."""
        ...


class ChangeFeed(Protocol):
    def changes(
        self,
        tenant_id: str,
        max_position: int,
        limit: int,
        before: int | None = None,
        stream_type: str | None = None,
        stream_id: str | None = None,
        event_types: Sequence[str] | None = None,
        since: datetime | None = None,
    ) -> list[RecordedEvent]:
        """The tenant's events with position <= ``max_position`` (and < ``before``), newest first."""
        ...


class EventLog(Protocol):
    def read_all(
        self,
        after_position: int = 0,
        limit: int = 1000,
        tenant_id: str | None = None,
        until: datetime | None = None,
        max_position: int | None = None,
    ) -> list[RecordedEvent]:
        """Events with position > ``after_position`` (<= ``max_position``), position order."""
        ...


class DeadLetterLookup(Protocol):
    def at_positions(self, tenant_id: str, positions: Sequence[int]) -> dict[int, dict[str, Any]]:
        """``{position: {pipeline, stage, reason}}`` of those of ``positions`` that were dead-lettered."""
        ...


class ServingProgress(Protocol):
    """How far the serving read models are; implemented by the process's runtime."""

    @property
    def watermark(self) -> int:
        """Every position up to this one is applied to the serving read models."""
        ...

    @property
    def lake_watermark(self) -> int | None:
        """The lake's (Iceberg) applied position; None when this process runs no lake."""
        ...

    @property
    def mode(self) -> str:
        """embedded | distributed."""
        ...

    def freshness_seconds(self) -> float: ...

    def flush_serving(self) -> None:
        """Catch up the tables the serving sink writes lazily (a no-op when nothing is pending)."""
        ...


class RejectionLog(Protocol):
    def count_rejections(self, tenant_id: str, since: datetime, until: datetime) -> int:
        """Commands rejected in (since, until]."""
        ...


class ReadProgress(Protocol):
    """How far the serving read models are; implemented by the process that keeps them current."""

    @property
    def watermark(self) -> int:
        """Every position up to this one is reflected in the serving read models."""
        ...

    def freshness_seconds(self) -> float:
        """How far the serving read models lag the event store (0 when caught up)."""
        ...

    async def wait_for_position(self, position: int, timeout: float) -> bool:
        """True once the watermark reaches ``position``; False when ``timeout`` seconds pass first."""
        ...

    def flush_serving(self) -> None:
        """Write what the serving sink holds back (tables metrics do not read are written lazily); a
        no-op when nothing is pending."""
        ...

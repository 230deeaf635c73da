"""What the read side needs from storage; connectors/ implements these (and nothing here imports it).

``ReadModelStore`` is the ClickHouse read model (chdb or a server); ``EventHistory`` the parts of the
event store that time travel, timelines and lineage read.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from domain.events import RecordedEvent
from projections.rows import Key, Row

if TYPE_CHECKING:
    from readmodels.webhooks import Delivery, Endpoint


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


# -- downstream: webhooks ----------------------------------------------------------------------------


class EventRange(Protocol):
    def read_all(
        self, after_position: int = 0, limit: int = 1000, tenant_id: str | None = None,
        until: datetime | None = None, max_position: int | None = None,
    ) -> list[RecordedEvent]:  # fmt: skip
        """Committed events after ``after_position`` in position order (bounded by ``max_position``)."""
        ...


class WebhookStorePort(Protocol):
    """Endpoints and the delivery outbox (connectors/webhook_store.py)."""

    def create_endpoint(
        self, tenant_id: str, url: str, secret: str, description: str = "", event_types: Iterable[str] = (),
        entity_ids: Iterable[str] = (), predicates: list[dict[str, Any]] | None = None,
    ) -> Endpoint: ...  # fmt: skip

    def get_endpoint(self, tenant_id: str | None, endpoint_id: str) -> Endpoint | None: ...

    def list_endpoints(self, tenant_id: str) -> list[Endpoint]: ...

    def delete_endpoint(self, tenant_id: str, endpoint_id: str) -> bool: ...

    def set_status(self, endpoint_id: str, status: str, reason: str | None = None) -> None: ...

    def rotate_secret(
        self, tenant_id: str, endpoint_id: str, new_secret: str, grace_s: float
    ) -> Endpoint | None: ...

    def add_delivery(
        self, endpoint_id: str, tenant_id: str, payload: dict[str, Any] | str, kind: str, event_type: str,
        dedup_key: str | None = None,
    ) -> Delivery | None:  # fmt: skip
        """Queue one delivery (committed on return); None if the endpoint is gone or the key was used."""
        ...

    def list_deliveries(
        self, tenant_id: str, endpoint_id: str, limit: int = 50, status: str | None = None,
        before_id: int | None = None,
    ) -> list[Delivery]: ...  # fmt: skip

    def queue_deliveries(self, rows: list[dict[str, Any]]) -> set[str]:
        """Insert outbox rows (readmodels.webhooks.event_delivery), idempotent on (endpoint, dedup_key);
        the endpoint ids that got a new delivery."""
        ...

    def count_replayed(self, endpoint_id: str, replay_id: str) -> int:
        """Deliveries a range replay ``replay_id`` has created for the endpoint so far."""
        ...

"""The worker fleet of one process: Dramatiq worker threads + the webhook relay (leader-elected).

Embedded (``agentflow up``): ``WebhookFleet.embedded(database_url)`` on dramatiq-postgres, threads in
the API process, the relay woken in-process by the event store's commit listener.
Distributed (``agentflow worker``): ``WebhookFleet(..., broker=redis_broker(url))`` in its own process;
the relay polls the event store. Any number of worker processes may run: one relay leads at a time.

``deliver(...)`` is the entry point for other producers (alerts, tests): it commits a delivery of an
arbitrary payload to an endpoint and enqueues its drain.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from dramatiq import Worker
from dramatiq.broker import Broker
from sqlalchemy.engine import Connection, Engine

from connectors.brokers import close_broker, postgres_broker
from connectors.database import make_engine
from connectors.secret_box import SecretBox
from connectors.webhook_store import WebhookStore
from readmodels.webhooks import Delivery
from services.config import WebhookSettings
from services.webhooks.actors import WebhookActors
from services.webhooks.relay import WebhookRelay

log = logging.getLogger("agentflow.workers")

# Delivery bookkeeping commits without waiting for the WAL flush (~3 ms each on this disk). Safe with
# at-least-once delivery: a Postgres crash can only forget recent bookkeeping, so an event is relayed
# again (same stable webhook-id, connectors.webhook_store.stable_message_id) or a success is repeated;
# the event store itself keeps synchronous commits.
ASYNC_COMMIT = {"options": "-c synchronous_commit=off"}


class WebhookFleet:
    def __init__(
        self,
        database_url: str,
        broker: Broker,
        settings: WebhookSettings | None = None,
        engine: Engine | None = None,
        relay: bool = True,
        workers: bool = True,
        *,
        box: SecretBox,
    ) -> None:
        """``box``: the keys of the stored signing secrets (the workers sign with them)."""
        self.settings = settings or WebhookSettings()
        self.database_url = database_url
        self._own_engine = engine is None
        self.engine = engine or make_engine(
            database_url, pool_size=self.settings.worker_threads + 3, max_overflow=6,
            application_name="agentflow-workers", pool_pre_ping=True, connect_args=ASYNC_COMMIT,
        )  # fmt: skip
        self.broker = broker
        self.store = WebhookStore(self.engine, box)
        self.actors = WebhookActors(broker, self.store, self.settings)
        self.relay = WebhookRelay(self.engine, database_url, self.store, self.actors.kick, self.settings)
        self.run_relay = relay
        self.run_workers = workers
        self.worker: Worker | None = None
        self._stop = threading.Event()
        self._relay_thread: threading.Thread | None = None

    @classmethod
    def embedded(cls, database_url: str, settings: WebhookSettings | None = None, **kw: Any) -> WebhookFleet:
        return cls(database_url, postgres_broker(database_url), settings, **kw)

    def start(self) -> None:
        if self.run_workers:
            self.worker = Worker(self.broker, worker_threads=self.settings.worker_threads, worker_timeout=100)
            self.worker.start()
        if self.run_relay:
            self._relay_thread = threading.Thread(
                target=self.relay.run, args=(self._stop,), name="webhook-relay", daemon=True
            )
            self._relay_thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self.relay.wake()
        if self._relay_thread is not None:
            self._relay_thread.join(timeout=timeout_s)
        if self.worker is not None:
            self.worker.stop(timeout=int(timeout_s * 1000))
        self.actors.sender.close()
        close_broker(self.broker)
        if self._own_engine:
            self.engine.dispose()

    def wake(self, *_: object) -> None:
        """Commit listener: new events may match a subscription."""
        self.relay.wake()

    # -- for other producers (alerts, the test endpoint) ---------------------------------------------
    def deliver(
        self,
        endpoint_id: str,
        tenant_id: str,
        payload: dict[str, Any] | str,
        kind: str,
        event_type: str,
        dedup_key: str | None = None,
        conn: Connection | None = None,
    ) -> Delivery | None:
        """Commit a signed delivery of ``payload`` to the endpoint and enqueue it. With ``conn`` the row
        joins the caller's transaction and the enqueue is left to the sweep (or call ``kick`` after
        the commit)."""
        delivery = self.store.add_delivery(endpoint_id, tenant_id, payload, kind, event_type, dedup_key, conn)
        if delivery is not None and conn is None:
            self.actors.kick(endpoint_id)
        return delivery

    def kick(self, endpoint_id: str) -> None:
        self.actors.kick(endpoint_id)

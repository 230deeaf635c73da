"""Brokers (dramatiq-postgres embedded, Redis distributed) and the webhook actor declared on them.

Actors are declared per broker instance (not on dramatiq's global broker) so one process can hold a
broker of either kind, and tests can run several.
"""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
from dramatiq.broker import Broker
from sqlalchemy.engine import make_url

from connectors.database import connect_raw, libpq_conninfo
from connectors.webhook_store import WebhookStore
from services.config import WebhookSettings
from services.workers.delivery import Drainer, Sender

log = logging.getLogger("agentflow.workers")

ACTOR_NAME = "deliver_endpoint"


def postgres_broker(database_url: str, poll_interval: float = 0.5, maxconn: int = 16) -> Broker:
    """dramatiq-postgres on the event-store database (schema ``dramatiq``, created if missing)."""
    from dramatiq_postgres import PostgresBroker
    from dramatiq_postgres.schema import init
    from dramatiq_postgres.utils import make_pool

    with connect_raw(database_url, autocommit=False) as conn, conn.cursor() as curs:
        init(curs)
        conn.commit()
    # broker messages are only wake-ups (the sweep re-sends lost ones): no WAL flush wait per enqueue/ack
    url = make_url(libpq_conninfo(database_url)).update_query_dict({"options": "-c synchronous_commit=off"})
    pool = make_pool(url.render_as_string(hide_password=False), maxconn=maxconn)
    return PostgresBroker(pool=pool, results=False, poll_interval=poll_interval)  # type: ignore[no-untyped-call]


def redis_broker(redis_url: str, namespace: str = "agentflow") -> Broker:
    from dramatiq.brokers.redis import RedisBroker

    return RedisBroker(url=redis_url, namespace=namespace)


def close_broker(broker: Broker) -> None:
    try:
        broker.close()
        pool = getattr(broker, "pool", None)
        if pool is not None and not getattr(broker, "_owns_pool", True):
            pool.close()
    except Exception:  # pragma: no cover - best effort on shutdown
        log.exception("closing the broker failed")


class WebhookActors:
    """The ``deliver_endpoint`` actor on ``broker``, and ``kick`` to enqueue it (the only way work
    reaches the broker: always for deliveries already committed to ``webhook_deliveries``)."""

    def __init__(self, broker: Broker, store: WebhookStore, settings: WebhookSettings) -> None:
        self.broker = broker
        self.store = store
        self.settings = settings
        self.sender = Sender(settings)
        self.drainer = Drainer(store, settings, self.sender)
        self.deliver: Any = dramatiq.actor(
            actor_name=ACTOR_NAME,
            queue_name=settings.queue_name,
            broker=broker,
            max_retries=0,  # the sweep re-enqueues work that is due and not in flight
            time_limit=int((settings.lease_s + 60) * 1000) * max(1, settings.drain_batch),
        )(self._deliver)

    def _deliver(self, endpoint_id: str) -> None:
        result = self.drainer.drain(endpoint_id)
        if result.requeue:
            self.kick(endpoint_id)
        elif result.retry_in_s is not None:
            self.kick(endpoint_id, delay_s=result.retry_in_s)

    def kick(self, endpoint_id: str, delay_s: float | None = None) -> None:
        """Enqueue a drain of ``endpoint_id`` (now, or after ``delay_s``). Losing this message loses
        nothing: the relay's sweep enqueues any endpoint whose due work nobody is delivering."""
        try:
            if delay_s and delay_s > 0:
                self.deliver.send_with_options(args=(endpoint_id,), delay=int(delay_s * 1000) + 1)
            else:
                self.deliver.send(endpoint_id)
        except Exception:
            log.exception("enqueueing a webhook drain for %s failed (the sweep will retry)", endpoint_id)

"""The ``deliver_endpoint`` actor, declared on a broker instance (connectors/brokers.py).

Actors are declared per broker instance (not on dramatiq's global broker) so one process can hold a
broker of either kind, and tests can run several.
"""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
from dramatiq.broker import Broker

from connectors.webhook_delivery import Drainer, Sender
from connectors.webhook_store import WebhookStore
from services.config import WebhookSettings

log = logging.getLogger("agentflow.workers")

ACTOR_NAME = "deliver_endpoint"


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

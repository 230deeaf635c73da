"""The webhook worker fleet: signed, retried deliveries, in order per endpoint.

- ``actors``: the ``deliver_endpoint`` Dramatiq actor, declared on a broker instance.
- ``relay``: tails the event store in commit order, writes deliveries (the outbox), enqueues them;
  sweeps deliveries that are due but not in flight.
- ``fleet``: starts/stops the relay and worker threads (inside ``agentflow up``, or ``agentflow worker``).
- ``cli``: ``agentflow worker``.

Elsewhere: what an endpoint receives and the retry schedule (readmodels/webhooks.py); endpoints, the
outbox and the lease protocol (connectors/webhook_store.py); one HTTP attempt and the drain loop
(connectors/webhook_delivery.py); signatures (connectors/webhook_signing.py); destination checks
(connectors/ssrf.py); the brokers (connectors/brokers.py); settings (services/config.py).
"""

"""The Dramatiq worker fleet: webhook delivery (signed, retried, ordered per endpoint).

- ``settings``: retry schedule, timeouts, SSRF policy (environment variables).
- ``signing``: Standard Webhooks signatures and ``whsec_`` secrets.
- ``ssrf``: destination checks (at subscription time and again at delivery, on the resolved address).
- ``delivery``: one HTTP attempt and the per-endpoint drain loop (lease, order, retries, attempt log).
- ``broker``: dramatiq-postgres (embedded) or Redis (distributed) and the actors declared on it.
- ``relay``: tails the event store in commit order, writes deliveries (the outbox), enqueues them;
  sweeps deliveries that are due but not in flight.
- ``fleet``: starts/stops the relay and worker threads (inside ``agentflow up``, or ``agentflow worker``).
"""

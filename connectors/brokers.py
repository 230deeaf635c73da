"""Dramatiq brokers: dramatiq-postgres (embedded, on the event-store database) and Redis (distributed).

Actors are declared per broker instance (services/webhooks/actors.py), not on dramatiq's global broker,
so one process can hold a broker of either kind and tests can run several.
"""

from __future__ import annotations

import logging

from dramatiq.broker import Broker
from sqlalchemy.engine import make_url

from connectors.database import connect_raw, libpq_conninfo

log = logging.getLogger("agentflow.workers")


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


"""``agentflow worker``: a worker-fleet process for the distributed deployment (Redis broker), or on
the Postgres broker against an external database. Runs the Dramatiq worker threads and a standby or
leading webhook relay; any number of these processes may run against one database. The workers sign
with the stored secrets, so they need the API's keys: ``AGENTFLOW_SECRET_KEYS``, or the ``secret-keys``
file of the data dir (``--data-dir``/``AGENTFLOW_DATA_DIR``); a worker never creates a key.

Also runnable as ``python -m services.webhooks.cli``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from services.config import Settings, settings_from_env
from services.logs import configure_logging

log = logging.getLogger("agentflow.workers")


def add_worker_command(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    p = sub.add_parser("worker", help="run a worker-fleet process (webhook relay + Dramatiq workers)")
    _add_arguments(p)
    return p


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--database-url", default=None, help="the event store (default: $AGENTFLOW_DATABASE_URL)")
    p.add_argument(
        "--redis-url", default=None,
        help="Redis broker (default: $AGENTFLOW_REDIS_URL); without one, dramatiq-postgres on the database",
    )  # fmt: skip
    p.add_argument("--threads", type=int, default=None, help="worker threads (default 8)")
    p.add_argument("--no-relay", action="store_true", help="only deliver; never run the relay")
    p.add_argument(
        "--data-dir", type=Path, default=None,
        help="where the secret-keys file is, without AGENTFLOW_SECRET_KEYS (default: $AGENTFLOW_DATA_DIR)",
    )  # fmt: skip


def run_worker_command(args: argparse.Namespace, server: Settings) -> int:
    database_url = args.database_url or server.database_url
    if not database_url:
        print("error: --database-url or AGENTFLOW_DATABASE_URL is required", file=sys.stderr)
        return 2
    redis_url = args.redis_url or server.redis_url
    from connectors.brokers import postgres_broker, redis_broker
    from connectors.database import make_engine
    from services.config import ConfigError
    from services.secrets import missing_keys, secret_box, stored_secret_census
    from services.webhooks.fleet import WebhookFleet

    try:
        box = secret_box(server.with_(data_dir=args.data_dir))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    # a worker that cannot open the stored secrets would fail every delivery: refuse to start instead
    probe = make_engine(database_url, pool_size=1, max_overflow=0)
    try:
        missing = missing_keys(box, stored_secret_census(probe))
    finally:
        probe.dispose()
    if missing:
        print(
            f"error: stored secrets are encrypted with key(s) {', '.join(missing)}, which this worker does "
            f"not have (its keys: {', '.join(box.key_ids)}): give it the API's AGENTFLOW_SECRET_KEYS",
            file=sys.stderr,
        )
        return 2
    settings = server.webhooks
    if args.threads:
        settings = dataclasses.replace(settings, worker_threads=args.threads)
    broker = redis_broker(redis_url) if redis_url else postgres_broker(database_url)
    fleet = WebhookFleet(database_url, broker, settings, relay=not args.no_relay, box=box)
    from services.lake_job import LakeMaintenanceJob  # scheduled lake maintenance (either deployment)

    lake = LakeMaintenanceJob.from_settings(broker, database_url, server.with_(data_dir=args.data_dir))
    lake.start()
    stop = threading.Event()

    def on_signal(sig: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    fleet.start()
    if server.metrics_port is not None:  # its deliveries' metrics (docs/observability.md)
        from services.metrics_endpoint import serve_metrics

        serve_metrics(server.host, server.metrics_port)
    # /v1/health's `workers` component lists the live heartbeats (services/heartbeat.py)
    from connectors.worker_heartbeats import HeartbeatStore
    from services.heartbeat import Heartbeat, threads_alive

    heartbeat = Heartbeat(
        HeartbeatStore(fleet.engine), lambda: sorted(broker.get_declared_queues()),
        lambda: threads_alive(fleet.worker), role="worker", broker="redis" if redis_url else "postgres",
        relay=not args.no_relay,
    )  # fmt: skip
    heartbeat.start()
    kind = "redis" if redis_url else "postgres"
    print(
        f"agentflow worker ready (broker={kind}, threads={settings.worker_threads}, pid={os.getpid()})",
        flush=True,
    )
    stop.wait()
    print("agentflow worker stopping ...", flush=True)
    heartbeat.stop()
    lake.stop()
    fleet.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agentflow worker", description=__doc__)
    _add_arguments(parser)
    args = parser.parse_args(argv)
    server = settings_from_env()
    configure_logging(server.log_level)
    return run_worker_command(args, server)


if __name__ == "__main__":
    sys.exit(main())

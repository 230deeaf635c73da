"""``agentflow up``: own Postgres cluster, migrations, API, projectors, optional demo traffic."""

from __future__ import annotations

import logging
import os
import socket
import sys
from types import FrameType

import uvicorn

from services.api.app import create_app
from services.auth import DEV_TENANT, ApiKeys, load_or_create_dev_key
from services.config import Settings
from services.runtime import Runtime

log = logging.getLogger("agentflow")


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGINT/SIGTERM after shutdown, which would skip stopping Postgres."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self._captured_signals.clear()


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _say(msg: str) -> None:
    print(msg, flush=True)


def run_up(settings: Settings, demo: bool = False, demo_rate: float = 10.0) -> int:
    if not _port_is_free(settings.host, settings.port):
        _say(f"error: {settings.host}:{settings.port} is already in use; pass --port to choose another")
        return 2
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    cluster = None
    database_url = settings.database_url
    if database_url is None:
        from connectors.postgres_cluster import PostgresCluster

        _say(f"starting Postgres under {settings.data_dir / 'postgres'} ...")
        cluster = PostgresCluster(settings.data_dir / "postgres")
        cluster.start()
        database_url = cluster.local_url  # unix socket: cheaper round trips than TCP
        _say(f"Postgres ready at {cluster.url}")
    try:
        from migrations import run_migrations

        _say("running migrations ...")
        run_migrations(database_url)
        keys = settings.api_keys
        dev_key = None
        if not keys:
            dev_key = load_or_create_dev_key(settings.data_dir)
            keys = {dev_key: DEV_TENANT}
        runtime = Runtime(settings, database_url)
        app = create_app(runtime, ApiKeys(keys))
        base = f"http://{settings.host}:{settings.port}"
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=5,
        )
        server = _Server(config)
        key_for_examples = dev_key or next(iter(keys))
        _banner(base, dev_key, key_for_examples, settings)
        if demo:
            from services.demo import start_demo

            start_demo(base, key_for_examples, server, rate=demo_rate)
        server.run()
        return 0
    finally:
        if cluster is not None:
            _say("stopping Postgres ...")
            cluster.stop()


def _banner(base: str, dev_key: str | None, key: str, settings: Settings) -> None:
    lines = [
        "",
        f"AgentFlow is serving on {base}   (data: {settings.data_dir.resolve()})",
    ]
    if dev_key:
        lines.append(f"development API key (tenant '{DEV_TENANT}'): {dev_key}")
    lines += [
        "try:",
        f"  curl -s {base}/v1/health",
        f"  curl -s -H 'X-API-Key: {key}' '{base}/v1/metrics/revenue?window=1h'",
        f"  curl -s -H 'X-API-Key: {key}' -H 'Content-Type: application/json' "
        f'-d \'{{"name":"Desk lamp","category":"home","price":"24.90","currency":"USD"}}\' '
        f"{base}/v1/products",
        f"  curl -s -H 'X-API-Key: {key}' {base}/v1/catalog",
        "Ctrl-C stops everything; data is kept for the next start.",
        "",
    ]
    _say("\n".join(lines))


def install_logging() -> None:
    level = os.environ.get("AGENTFLOW_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)

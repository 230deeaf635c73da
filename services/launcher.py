"""``agentflow up``: own Postgres cluster, migrations, API, projectors, optional demo traffic.

``--distributed`` replaces the in-process projectors with Debezium -> Kafka -> Flink and the serving
loader (our own stack under the data dir, or an existing one named by the Kafka/Connect settings).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from services.auth import DEV_TENANT, load_or_create_dev_key
from services.config import ConfigError, Settings
from services.distributed.java_process import is_ours, pid_alive

if TYPE_CHECKING:
    import uvicorn

    from services.distributed.stack import DistributedStack

log = logging.getLogger("agentflow")
PID_FILE = "agentflow.pid"


def _server(config: uvicorn.Config) -> uvicorn.Server:
    """uvicorn re-raises SIGINT/SIGTERM after shutdown, which would skip stopping Postgres. (uvicorn,
    the app and the composition root are imported here, not at module level: `agentflow down` and
    `agentflow restart` import this module and must start fast.)"""
    import uvicorn

    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            super().handle_exit(sig, frame)
            self._captured_signals.clear()

    return _Server(config)


def uvicorn_config(app: Any, host: str, port: int) -> uvicorn.Config:
    """The server settings of `agentflow up` (also those of the benchmark's bare Litestar anchor, so its
    figure bounds ours on the same server): uvicorn's default loop and HTTP implementation (uvloop and
    httptools when installed, as they are here), one process."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        log_config=None,  # uvicorn's lines go through the process's structured logging (services/logs.py)
        access_log=False,  # the front door writes the access lines
        lifespan="on",
        timeout_graceful_shutdown=5,
        # X-Forwarded-Proto is trusted only as AGENTFLOW_TRUST_FORWARDED_PROTO says (api/http_guard.py),
        # not by uvicorn's default for any proxy on 127.0.0.1
        proxy_headers=False,
        server_header=False,  # no "server: uvicorn" on every answer: it only helps a prober
    )


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
    """Serve until Ctrl-C/SIGTERM. Distributed without a Kafka address also runs our own stack."""
    if not _port_is_free(settings.host, settings.port):
        _say(f"error: {settings.host}:{settings.port} is already in use; pass --port to choose another")
        return 2
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    pid_file = settings.data_dir / PID_FILE
    pid_file.write_text(f"{os.getpid()}\n")
    # SIGTERM while starting (before uvicorn takes the signal over) must unwind through the finally
    # below, or the engines started so far (own sessions, own process groups) would be orphaned
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    cluster = None
    stack: DistributedStack | None = None
    database_url = settings.database_url
    tcp_url = database_url
    try:
        if database_url is None:
            from connectors.postgres_cluster import PostgresCluster

            _say(f"starting Postgres under {settings.data_dir / 'postgres'} ...")
            cluster = PostgresCluster(settings.data_dir / "postgres", bin_dir=settings.pg_bin)
            cluster.start()
            database_url = cluster.local_url  # unix socket: cheaper round trips than TCP
            tcp_url = cluster.url  # the JVMs (Debezium, Iceberg's JDBC catalog) need TCP
            _say(f"Postgres ready at {cluster.url}")
        from migrations import run_migrations

        _say("running migrations ...")
        run_migrations(database_url)
        if settings.deployment == "distributed":
            assert tcp_url is not None
            settings, stack = _distributed(settings, tcp_url)
        dev_key = None
        if not settings.api_keys:
            # the one key of a development install: its holder owns the machine (admin and operator)
            dev_key = load_or_create_dev_key(settings.data_dir)
            settings = dataclasses.replace(
                settings, api_keys={dev_key: DEV_TENANT}, admin_api_keys=frozenset({dev_key}),
                operator_api_keys=frozenset({dev_key}),
            )  # fmt: skip
        keys = settings.api_keys
        from services.api.app import create_app
        from services.bootstrap import build

        try:
            container = build(settings, database_url)
        except ConfigError as exc:  # e.g. stored secrets under a key this process lacks (docs/security.md)
            _say(f"error: {exc}")
            return 2
        app = create_app(container)
        base = f"http://{settings.host}:{settings.port}"
        server = _server(uvicorn_config(app, settings.host, settings.port))
        key_for_examples = dev_key or next(iter(keys))
        _banner(base, dev_key, key_for_examples, settings)
        if demo:
            from services.demo import start_demo

            start_demo(base, key_for_examples, server, rate=demo_rate)
        server.run()
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the shutdown short
        if stack is not None:
            stack.stop()
        if cluster is not None:
            _say("stopping Postgres ...")
            cluster.stop()
        pid_file.unlink(missing_ok=True)


def _distributed(settings: Settings, database_url: str) -> tuple[Settings, DistributedStack | None]:
    """Start our own Kafka/Connect/Flink stack unless ``kafka_bootstrap`` names an existing one; with
    ``connect_url`` register the Debezium connector there (idempotent)."""
    from services.distributed.cdc import register_connector
    from services.distributed.stack import CONNECTOR, DistributedStack

    if settings.kafka_bootstrap:
        if settings.connect_url:
            _say(f"registering the Debezium connector at {settings.connect_url} ...")
            register_connector(
                settings.connect_url, CONNECTOR, database_url, topic_prefix=settings.topic_prefix
            )
        return settings, None
    warehouse = (settings.data_dir / "warehouse").resolve().as_uri()
    stack = DistributedStack(
        settings.data_dir / "distributed", database_url, settings.topic_prefix, warehouse,
        lake=settings.iceberg_enabled, say=_say,
    )  # fmt: skip
    try:
        stack.start()
    except BaseException:
        stack.stop()
        raise
    stack.supervise()  # reaps, reports and restarts an engine that dies; `agentflow restart ENGINE`
    assert stack.connect is not None and stack.flink is not None
    ours = dataclasses.replace(
        settings, kafka_bootstrap=stack.bootstrap, connect_url=stack.connect.url,
        flink_rest_url=stack.flink.rest_url,
    )  # fmt: skip
    return ours, stack


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def run_down(data_dir: Path, timeout: float = 240.0) -> int:
    """Stop a running ``agentflow up`` (SIGTERM: it stops its engines and Postgres in order), then
    stop any engine whose pid file outlived it (a crashed or killed ``up``)."""
    pid_file = data_dir / PID_FILE
    status = 0
    try:
        pid: int | None = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        pid = None
    if pid is not None and pid_alive(pid) and is_ours(pid):
        os.kill(pid, signal.SIGTERM)
        _say(f"stopping agentflow (pid {pid}) ...")
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.3)
        if pid_alive(pid):
            _say(f"error: pid {pid} still running after {timeout:.0f}s")
            status = 1
        else:
            _say("stopped")
    else:
        _say("agentflow is not running")
    pid_file.unlink(missing_ok=True)
    for leftover in sorted((data_dir / "distributed").rglob("*.pid")):
        try:
            engine_pid = int(leftover.read_text().strip())
        except (OSError, ValueError):
            continue
        if pid_alive(engine_pid) and is_ours(engine_pid):
            _say(f"stopping orphaned {leftover.stem} (pid {engine_pid}) ...")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(engine_pid, signal.SIGTERM)  # engines lead their own process group
            deadline = time.monotonic() + 30
            while pid_alive(engine_pid) and time.monotonic() < deadline:
                time.sleep(0.3)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(engine_pid, signal.SIGKILL)
        leftover.unlink(missing_ok=True)
    return status


def run_restart(data_dir: Path, engine: str, timeout: float = 300.0) -> int:
    """Ask the supervisor of a running ``agentflow up --distributed`` to restart one engine (control
    files, services/distributed/supervisor.py) and wait for the outcome."""
    from services.distributed.supervisor import done_file, request_file

    try:
        pid = int((data_dir / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        pid = 0
    if not (pid and pid_alive(pid) and is_ours(pid)):
        _say("error: agentflow is not running (start it with `agentflow up --distributed`)")
        return 1
    run_dir = data_dir / "distributed"
    if not run_dir.is_dir():
        _say(f"error: no engines of ours under {run_dir} (`agentflow up --distributed` starts them)")
        return 1
    request, done = request_file(run_dir, engine), done_file(run_dir, engine)
    done.unlink(missing_ok=True)
    request.touch()
    _say(f"restarting {engine} ...")
    started = time.monotonic()
    while request.exists() and time.monotonic() - started < 10:
        time.sleep(0.2)
    if request.exists():
        request.unlink(missing_ok=True)
        _say(f"error: nothing took the request within 10s (is pid {pid} `agentflow up --distributed`?)")
        return 1
    while not done.exists() and time.monotonic() - started < timeout:
        if not pid_alive(pid):
            _say("error: agentflow stopped during the restart")
            return 1
        time.sleep(0.2)
    outcome = done.read_text().strip() if done.exists() else f"no outcome within {timeout:.0f}s"
    done.unlink(missing_ok=True)
    _say(f"{engine}: {outcome} ({time.monotonic() - started:.1f}s)")
    return 0 if outcome == "ok" else 1


def _banner(base: str, dev_key: str | None, key: str, settings: Settings) -> None:
    lines = [
        "",
        f"AgentFlow is serving on {base}   (data: {settings.data_dir.resolve()})",
    ]
    if dev_key:
        lines.append(f"development API key (tenant '{DEV_TENANT}'; read write admin operator): {dev_key}")
    lines += [
        "try:",
        f"  curl -s {base}/v1/health",
        f"  curl -s -H 'X-API-Key: {key}' '{base}/v1/metrics/revenue?window=1h'",
        f"  curl -s -H 'X-API-Key: {key}' -H 'Content-Type: application/json' "
        f'-d \'{{"name":"Desk lamp","category":"home","price":"24.90","currency":"USD"}}\' '
        f"{base}/v1/products",
        f"  curl -s -H 'X-API-Key: {key}' {base}/v1/catalog",
        # in the background (make up-distributed, nohup) there is no terminal whose Ctrl-C would reach us
        ("Ctrl-C stops everything" if sys.stdin.isatty() else
         f"`agentflow down --data-dir {settings.data_dir}` (or `make down-distributed`) stops everything")
        + "; data is kept for the next start.",
        "",
    ]
    _say("\n".join(lines))

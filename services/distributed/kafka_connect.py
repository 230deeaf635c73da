"""A Kafka Connect worker in distributed mode (one worker) with the Debezium Postgres and MariaDB/MySQL
plugins, plus a small REST client to register, update, inspect and delete connectors.

The worker keeps its config/offset/status in Kafka topics (RF 1) named after ``group_id``, so a
restarted worker with the same ``group_id`` resumes its connectors where they left off.
``plugin.path`` is ``run_dir/connect-plugins`` holding a symlink per plugin bundle (Connect treats
each sub-directory as one isolated plugin; the jars cache itself holds unrelated bundles).
"""

from __future__ import annotations

import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from connectors import jars
from connectors.postgres_cluster import free_port
from services.distributed.java_process import JavaProcess

MAIN_CLASS = "org.apache.kafka.connect.cli.ConnectDistributed"
DEFAULT_PLUGINS = ("debezium-postgres", "debezium-mariadb")


class ConnectError(RuntimeError):
    pass


def worker_properties(
    bootstrap_servers: str,
    rest_port: int,
    plugin_path: Path,
    group_id: str,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    props = {
        "bootstrap.servers": bootstrap_servers,
        "group.id": group_id,
        "key.converter": "org.apache.kafka.connect.storage.StringConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "false",
        "config.storage.topic": f"{group_id}-configs",
        "offset.storage.topic": f"{group_id}-offsets",
        "status.storage.topic": f"{group_id}-status",
        "config.storage.replication.factor": "1",
        "offset.storage.replication.factor": "1",
        "status.storage.replication.factor": "1",
        "offset.storage.partitions": "5",
        "status.storage.partitions": "1",
        # Debezium confirms the slot's LSN to Postgres on offset commit: 1 s keeps WAL retention and
        # the replay window after a crash small (default 60 s)
        "offset.flush.interval.ms": "1000",
        "listeners": f"http://127.0.0.1:{rest_port}",
        "rest.advertised.host.name": "127.0.0.1",
        "rest.advertised.port": str(rest_port),
        "plugin.path": str(plugin_path),
        "plugin.discovery": "service_load",
        "topic.creation.enable": "true",
        "connector.client.config.override.policy": "All",
        # latency over batching: Kafka 4 defaults linger.ms to 5
        "producer.linger.ms": "0",
        "scheduled.rebalance.max.delay.ms": "10000",
        "task.shutdown.graceful.timeout.ms": "10000",
    }
    props.update(extra or {})
    return props


class KafkaConnect:
    """``start()`` launches the worker and waits until its REST API answers."""

    def __init__(
        self,
        run_dir: Path | str,
        bootstrap_servers: str,
        *,
        rest_port: int | None = None,
        group_id: str = "agentflow-connect",
        plugins: tuple[str, ...] = DEFAULT_PLUGINS,
        heap: str = "512m",
        extra_config: dict[str, str] | None = None,
    ) -> None:
        self.run_dir = Path(run_dir).absolute()
        self.bootstrap_servers = bootstrap_servers
        self.rest_port = rest_port or free_port()
        self.group_id = group_id
        self.plugins = plugins
        self.heap = heap
        self.extra_config = dict(extra_config or {})
        self.plugin_path = self.run_dir / "connect-plugins"
        self.config_file = self.run_dir / "connect-distributed.properties"
        self.process: JavaProcess | None = None
        self.start_seconds: float | None = None
        self._client = httpx.Client(timeout=30.0)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def _link_plugins(self) -> None:
        self.plugin_path.mkdir(parents=True, exist_ok=True)
        for bundle in self.plugins:
            target = jars.fetch(bundle)
            link = self.plugin_path / bundle
            if link.is_symlink() or link.exists():
                if link.resolve() == target.resolve():
                    continue
                link.unlink()
            link.symlink_to(target, target_is_directory=True)

    def start(self, timeout: float = 180.0) -> str:
        """Start the worker; returns the REST base URL."""
        started = time.monotonic()
        if self._client.is_closed:  # stopped before: a restart needs a fresh REST client
            self._client = httpx.Client(timeout=30.0)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._link_plugins()
        props = worker_properties(
            self.bootstrap_servers, self.rest_port, self.plugin_path, self.group_id, self.extra_config
        )
        self.config_file.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        self.process = JavaProcess(
            "connect", MAIN_CLASS, jars.classpath("connect"), [str(self.config_file)], self.run_dir,
            heap=self.heap,
            loggers={
                "org.reflections": "ERROR",
                "org.apache.kafka.clients": "WARN",
                "org.apache.kafka.common.utils.AppInfoParser": "WARN",
                "org.eclipse.jetty": "WARN",
                "org.apache.kafka.connect.runtime.isolation": "WARN",
                "io.debezium.connector.postgresql.TypeRegistry": "ERROR",
            },
        )
        self.process.start()
        deadline = started + timeout
        while True:
            if not self.process.is_running():
                raise ConnectError(f"kafka connect exited during startup:\n{self.process.tail()}")
            try:
                # /connectors answers only once the worker joined its group and read the config topic
                r = self._client.get(f"{self.url}/connectors", timeout=2.0)
                if r.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"kafka connect REST not ready within {timeout}s:\n{self.process.tail()}")
            time.sleep(0.2)
        self.start_seconds = time.monotonic() - started
        return self.url

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is not None:
            self.process.stop(timeout)
        self._client.close()

    def is_running(self) -> bool:
        return self.process is not None and self.process.is_running()

    def __enter__(self) -> KafkaConnect:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- REST -------------------------------------------------------------------------------------
    def _check(self, r: httpx.Response) -> Any:
        if r.status_code >= 400:
            raise ConnectError(f"{r.request.method} {r.request.url} -> {r.status_code}: {r.text}")
        return r.json() if r.content else None

    def connectors(self) -> list[str]:
        return list(self._check(self._client.get(f"{self.url}/connectors")))

    def put_connector(self, name: str, config: dict[str, str]) -> dict[str, Any]:
        """Create or update (idempotent) a connector. Connect validates the config first."""
        r = self._client.put(f"{self.url}/connectors/{name}/config", json=config, timeout=120.0)
        return dict(self._check(r))

    def validate(self, config: dict[str, str]) -> dict[str, Any]:
        """Connect's validation report; ``error_count`` > 0 lists per-field errors."""
        cls = config["connector.class"].rsplit(".", 1)[-1]
        url = f"{self.url}/connector-plugins/{cls}/config/validate"
        r = self._client.put(url, json=config, timeout=120.0)
        return dict(self._check(r))

    def status(self, name: str) -> dict[str, Any] | None:
        r = self._client.get(f"{self.url}/connectors/{name}/status")
        if r.status_code == 404:
            return None
        return dict(self._check(r))

    def delete_connector(self, name: str) -> bool:
        """Delete; False when it did not exist. The connector's tasks are stopped when this returns."""
        r = self._client.delete(f"{self.url}/connectors/{name}")
        if r.status_code == 404:
            return False
        self._check(r)
        return True

    def wait_running(self, name: str, timeout: float = 120.0) -> dict[str, Any]:
        """Wait until the connector and all its tasks are RUNNING; raises with the trace if one FAILED."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] | None = None
        while True:
            last = self.status(name)
            if last is not None:
                states = [last["connector"]["state"], *(t["state"] for t in last.get("tasks", []))]
                if "FAILED" in states:
                    raise ConnectError(f"connector {name} failed: {last}")
                if last.get("tasks") and all(s == "RUNNING" for s in states):
                    return last
            if time.monotonic() > deadline:
                raise TimeoutError(f"connector {name} not running within {timeout}s: {last}")
            time.sleep(0.2)

    def wait_deleted(self, name: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while name in self.connectors():
            if time.monotonic() > deadline:
                raise TimeoutError(f"connector {name} still listed after {timeout}s")
            time.sleep(0.2)

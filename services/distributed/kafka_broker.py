"""A single-node Apache Kafka broker in KRaft mode (broker + controller in one JVM) on 127.0.0.1.

Storage is formatted once under ``run_dir/kafka-data`` (skipped when ``meta.properties`` exists, so a
restart on the same run dir keeps its topics). Settings are tuned for one node: replication factor 1
everywhere, no initial rebalance delay, 3 partitions per auto-created topic.
"""

from __future__ import annotations

import base64
import time
import uuid
from pathlib import Path
from types import TracebackType

from connectors import jars
from connectors.postgres_cluster import free_port
from services.distributed.java_process import JavaProcess, run_java

READY_LINE = "Kafka Server started"
STORAGE_TOOL = "kafka.tools.StorageTool"
MAIN_CLASS = "kafka.Kafka"


def kafka_uuid() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (Kafka's ``Uuid`` format).

    Like Kafka's own ``Uuid.randomUuid``, never one starting with ``-``: the storage tool's
    argument parser would read such an id as an option (about 1 in 64 ids would fail).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def server_properties(
    data_dir: Path,
    port: int,
    controller_port: int,
    *,
    num_partitions: int = 3,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": str(num_partitions),
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "10",  # default 50: slow first group join on 2 cores
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "5",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "true",
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.recovery.threads.per.data.dir": "1",
        "log.retention.hours": "168",
        "log.segment.bytes": str(256 * 1024 * 1024),
    }
    props.update(extra or {})
    return props


def _write_properties(path: Path, props: dict[str, str]) -> None:
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))


class KafkaBroker:
    """``start()`` formats storage if needed, launches the JVM and waits until the broker serves."""

    def __init__(
        self,
        run_dir: Path | str,
        *,
        port: int | None = None,
        controller_port: int | None = None,
        heap: str = "512m",
        num_partitions: int = 3,
        extra_config: dict[str, str] | None = None,
    ) -> None:
        self.run_dir = Path(run_dir).absolute()
        self.data_dir = self.run_dir / "kafka-data"
        self.port = port or free_port()
        self.controller_port = controller_port or free_port()
        self.heap = heap
        self.num_partitions = num_partitions
        self.extra_config = dict(extra_config or {})
        self.config_file = self.run_dir / "kafka-server.properties"
        self.process: JavaProcess | None = None
        self.start_seconds: float | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _format(self, classpath: str) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        run_java(
            STORAGE_TOOL, classpath,
            ["format", "-t", kafka_uuid(), "-c", str(self.config_file), "--ignore-formatted"],
            self.run_dir, "kafka-storage",
        )

    def start(self, timeout: float = 120.0) -> str:
        """Start the broker; returns ``bootstrap_servers``."""
        started = time.monotonic()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        classpath = jars.classpath("kafka")
        _write_properties(
            self.config_file,
            server_properties(
                self.data_dir, self.port, self.controller_port,
                num_partitions=self.num_partitions, extra=self.extra_config,
            ),
        )
        self._format(classpath)
        self.process = JavaProcess(
            "kafka", MAIN_CLASS, classpath, [str(self.config_file)], self.run_dir, heap=self.heap,
            system_properties={"kafka.logs.dir": str(self.run_dir)},
            loggers={
                "kafka.log.LogCleaner": "WARN",
                "org.apache.kafka.storage": "WARN",
                "state.change.logger": "WARN",
            },
        )
        # the log file is appended across restarts: only a READY_LINE written after this point counts
        offset = self.process.log_file.stat().st_size if self.process.log_file.exists() else 0
        self.process.start()
        self.process.wait_for_port(self.port, timeout)
        deadline = started + timeout
        while not self._ready_since(offset):
            if not self.process.is_running():
                raise RuntimeError(f"kafka exited during startup:\n{self.process.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"kafka not ready within {timeout}s:\n{self.process.tail()}")
            time.sleep(0.1)
        self.start_seconds = time.monotonic() - started
        return self.bootstrap_servers

    def _ready_since(self, offset: int) -> bool:
        assert self.process is not None
        try:
            with self.process.log_file.open("rb") as f:
                f.seek(offset)
                return READY_LINE.encode() in f.read()
        except OSError:
            return False

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is not None:
            self.process.stop(timeout)

    def is_running(self) -> bool:
        return self.process is not None and self.process.is_running()

    def __enter__(self) -> KafkaBroker:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

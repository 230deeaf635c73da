"""The whole distributed pipeline on this machine, against a given Postgres event store:

    Kafka (KRaft) -> Kafka Connect + Debezium (captures ``events``) -> Flink job (mini-cluster)

Everything runs in the background on 127.0.0.1 free ports with logs and pid files under ``run_dir``;
the serving loader runs inside the API process (services/runtime.py, distributed mode). Each part can
be stopped and started again on its own (the end-to-end test restarts Flink and Connect mid-stream):
Connect resumes from its offsets in Kafka, Flink from its newest checkpoint. :meth:`supervise` keeps
them running (services/distributed/supervisor.py); what they print outside their log files reaches
Python logging (services/distributed/output_relay.py). A stop with the broker gone bounds Connect's and
Flink's shutdown (both would wait on the broker) and kills them after a few seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from services.distributed.cdc import start_event_capture
from services.distributed.flink_job import FlinkJob
from services.distributed.java_process import port_open
from services.distributed.kafka_broker import KafkaBroker
from services.distributed.kafka_connect import KafkaConnect
from services.distributed.output_relay import OutputRelay
from services.distributed.supervisor import Engine, Supervisor

CONNECTOR = "agentflow-events"
STOP_TIMEOUT_S = 20.0  # each engine's graceful stop, broker up
STOP_TIMEOUT_NO_BROKER_S = 3.0  # Connect and Flink without a broker: they would wait for it


def ensure_topics(bootstrap: str, prefix: str, partitions: int = 3, timeout: float = 30.0) -> None:
    """Create the pipeline's topics up front: Flink's source fails on a topic that does not exist yet,
    and Debezium creates the CDC topic only with the first captured row."""
    from confluent_kafka.admin import AdminClient, NewTopic

    from connectors.kafka_logging import kafka_client_logging

    admin = AdminClient({"bootstrap.servers": bootstrap, **kafka_client_logging("topics")})
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = [f"{prefix}.{name}" for name in ("events", "serving", "deadletter")]
    new = [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in wanted if t not in existing]
    for topic, future in admin.create_topics(new, request_timeout=timeout).items() if new else ():
        try:
            future.result()
        except Exception as e:  # created concurrently is fine
            if "TOPIC_ALREADY_EXISTS" not in str(e):
                raise RuntimeError(f"creating topic {topic} failed: {e}") from e


class DistributedStack:
    def __init__(
        self,
        run_dir: Path | str,
        database_url: str,
        topic_prefix: str = "agentflow",
        warehouse: str | None = None,
        lake: bool = True,
        say: Callable[[str], None] = print,
    ) -> None:
        """``database_url`` must reach Postgres over TCP (Debezium and the Iceberg JDBC catalog are JVMs)."""
        self.run_dir = Path(run_dir).absolute()
        self.database_url = database_url
        self.topic_prefix = topic_prefix
        self.warehouse = warehouse or (self.run_dir / "warehouse").as_uri()
        self.lake = lake
        self.say = say
        self.broker = KafkaBroker(self.run_dir / "kafka")
        self.connect: KafkaConnect | None = None
        self.flink: FlinkJob | None = None
        self.supervisor: Supervisor | None = None
        self.output: OutputRelay | None = None

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap_servers

    def _timed(self, what: str, step: Callable[[], object]) -> None:
        self.say(f"starting {what} ...")
        t0 = time.monotonic()
        step()
        self.say(f"{what} ready in {time.monotonic() - t0:.1f}s")

    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._timed(f"Kafka broker (KRaft) on {self.bootstrap}", self.broker.start)
        self.connect = KafkaConnect(self.run_dir / "connect", self.bootstrap)
        ensure_topics(self.bootstrap, self.topic_prefix)
        self._timed("Kafka Connect + Debezium", self.start_connect)
        self.flink = FlinkJob(
            self.run_dir / "flink", self.bootstrap, self.database_url, self.warehouse, self.topic_prefix,
            lake=self.lake,
        )  # fmt: skip
        self._timed("Flink projection job", self.flink.start)

    def start_connect(self) -> None:
        """Start (or restart) the Connect worker and register the connector (idempotent PUT)."""
        assert self.connect is not None
        if not self.connect.is_running():
            self.connect.start()
        start_event_capture(self.connect, self.database_url, name=CONNECTOR, topic_prefix=self.topic_prefix)

    def engines(self) -> list[Engine]:
        """The engines as the supervisor sees them (after :meth:`start`)."""
        assert self.connect is not None and self.flink is not None
        broker, connect, flink = self.broker, self.connect, self.flink

        def broker_exited() -> str | None:
            return broker.process.exited() if broker.process is not None else None

        def connect_exited() -> str | None:
            return connect.process.exited() if connect.process is not None else None

        def start_broker() -> None:
            broker.start()

        return [
            Engine("kafka", broker_exited, lambda: broker.stop(STOP_TIMEOUT_S), start_broker),
            Engine("connect", connect_exited, lambda: connect.stop(self._bounded()), self.start_connect),
            Engine("flink", flink.exited, lambda: flink.stop(self._bounded()), flink.start),
        ]

    def supervise(self) -> Supervisor:
        """Start the supervisor thread (reap, report, restart with backoff; restart requests)."""
        self.supervisor = Supervisor(self.engines(), self.run_dir, self.say)
        self.supervisor.start()
        assert self.flink is not None
        assert self.connect is not None
        self.output = OutputRelay({
            "kafka": self.broker.run_dir / "kafka.out", "connect": self.connect.run_dir / "connect.out",
            "flink": self.flink.log_file,
        })  # fmt: skip
        self.output.start()
        return self.supervisor

    def _broker_serves(self) -> bool:
        restarting = self.supervisor is not None and self.supervisor.busy == "kafka"
        return not restarting and self.broker.is_running() and port_open(self.broker.port, timeout=0.3)

    def _bounded(self) -> float:
        """How long Connect or Flink may take to stop: short when the broker they wait on is gone."""
        return STOP_TIMEOUT_S if self._broker_serves() else STOP_TIMEOUT_NO_BROKER_S

    def _stop_part(self, name: str, part: FlinkJob | KafkaConnect | KafkaBroker, timeout: float) -> None:
        self.say(f"stopping {name} ...")
        try:
            part.stop(timeout)
        except Exception as exc:  # stop the rest regardless
            self.say(f"stopping {name} failed: {exc}")

    def stop(self) -> None:
        """Stop everything; the replication slot and all offsets/checkpoints stay for the next start.
        Flink, then Connect, then the broker; with the broker gone, Flink and Connect at once, each
        killed after STOP_TIMEOUT_NO_BROKER_S (both would wait for the broker)."""
        if self.supervisor is not None:
            self.supervisor.stop()
        named = (("Flink job", self.flink), ("Kafka Connect", self.connect))
        clients = [(name, part) for name, part in named if part is not None]
        if self._broker_serves():
            for name, part in clients:
                self._stop_part(name, part, STOP_TIMEOUT_S)
        else:
            threads = [
                threading.Thread(target=self._stop_part, args=(name, part, STOP_TIMEOUT_NO_BROKER_S))
                for name, part in clients
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        self._stop_part("Kafka", self.broker, STOP_TIMEOUT_S)
        if self.output is not None:
            self.output.stop()

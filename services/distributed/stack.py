"""The whole distributed pipeline on this machine, against a given Postgres event store:

    Kafka (KRaft) -> Kafka Connect + Debezium (captures ``events``) -> Flink job (mini-cluster)

Everything runs in the background on 127.0.0.1 free ports with logs and pid files under ``run_dir``;
the serving loader runs inside the API process (services/runtime.py, distributed mode). Each part can
be stopped and started again on its own (the end-to-end test restarts Flink and Connect mid-stream):
Connect resumes from its offsets in Kafka, Flink from its newest checkpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from services.distributed.cdc import start_event_capture
from services.distributed.flink_job import FlinkJob
from services.distributed.kafka_broker import KafkaBroker
from services.distributed.kafka_connect import KafkaConnect

CONNECTOR = "agentflow-events"


def ensure_topics(bootstrap: str, prefix: str, partitions: int = 3, timeout: float = 30.0) -> None:
    """Create the pipeline's topics up front: Flink's source fails on a topic that does not exist yet,
    and Debezium creates the CDC topic only with the first captured row."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
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

    def stop(self) -> None:
        """Stop everything; the replication slot and all offsets/checkpoints stay for the next start."""
        for name, part in (
            ("Flink job", self.flink),
            ("Kafka Connect", self.connect),
            ("Kafka", self.broker),
        ):
            if part is not None:
                self.say(f"stopping {name} ...")
                try:
                    part.stop()
                except Exception as exc:  # stop the rest regardless
                    self.say(f"stopping {name} failed: {exc}")

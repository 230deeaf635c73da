"""The distributed projection job (PyFlink DataStream + Table API sinks).

    Kafka CDC topic (<prefix>.events, Debezium)                                 -> dead letters
      -> key by tenant -> decode, upcast, validate, dedup by event id, project --+-> serving upserts
                                                                                 +-> Iceberg events
Sinks: ``<prefix>.serving`` and ``<prefix>.deadletter`` Kafka topics keyed by stream id (the serving
loader applies them to ClickHouse), and the Iceberg ``agentflow.events`` table in the JDBC catalog that
pyiceberg reads too, committed on checkpoints. State (dedup set, projection rows) is keyed by tenant
and checkpointed with the Kafka offsets, so a restart from a checkpoint resumes where it stopped.

Runs in its own virtualenv (PyFlink pins pyarrow < 17): locally ``python -m projections.flink.job
...`` starts a mini-cluster; on a real cluster ``flink run -py projections/flink/job.py -pyfs <zip>``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pyflink.common import Configuration, Row, Types, WatermarkStrategy
from pyflink.common.serialization import SimpleStringSchema
from pyflink.common.time import Time
from pyflink.datastream import (
    CheckpointingMode,
    KeyedProcessFunction,
    OutputTag,
    RuntimeContext,
    StreamExecutionEnvironment,
)
from pyflink.datastream.connectors.kafka import (
    KafkaOffsetResetStrategy,
    KafkaOffsetsInitializer,
    KafkaSource,
)
from pyflink.datastream.state import MapStateDescriptor, StateTtlConfig
from pyflink.table import StreamTableEnvironment

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from projections.flink.pipeline import Outcome, StateLookup, process  # noqa: E402
from projections.flink.spans import operator_spans  # noqa: E402
from projections.flink.sql import LAKE_TABLES, ddl_statements, insert_statements  # noqa: E402

KV = Types.ROW_NAMED(["k", "v"], [Types.STRING(), Types.STRING()])
_FLINK_TYPES = {"STRING": Types.STRING, "BIGINT": Types.LONG, "INT": Types.INT, "TS": Types.LONG}
DEAD_LETTERS = OutputTag("dead-letters", KV)
LAKE = {
    table: OutputTag(
        f"lake-{table}", Types.ROW_NAMED([c for c, _ in cols], [_FLINK_TYPES[t]() for _, t in cols])
    )
    for table, cols in LAKE_TABLES.items()
}


class ProjectEvents(KeyedProcessFunction):  # type: ignore[misc]
    """Per tenant: dedup by event id (7-day TTL) and the rows project() looks up, in keyed state.
    With ``OTEL_EXPORTER_OTLP_ENDPOINT`` set, a traced event is processed in a ``flink.project`` span
    (spans.py)."""

    def open(self, runtime_context: RuntimeContext) -> None:
        seen = MapStateDescriptor("seen-event-ids", Types.STRING(), Types.BOOLEAN())
        seen.enable_time_to_live(
            StateTtlConfig.new_builder(Time.days(7))
            .set_update_type(StateTtlConfig.UpdateType.OnCreateAndWrite)
            .build()
        )
        self.seen = runtime_context.get_map_state(seen)
        rows = MapStateDescriptor("projection-rows", Types.STRING(), Types.PICKLED_BYTE_ARRAY())
        self.lookup = StateLookup(runtime_context.get_map_state(rows))
        self.spans = operator_spans()  # None unless OTEL_EXPORTER_OTLP_ENDPOINT is set

    def _process(self, value: str) -> Outcome:
        return process(value, self.seen.contains, lambda eid: self.seen.put(eid, True), self.lookup)

    def process_element(self, value: str, ctx: KeyedProcessFunction.Context) -> Any:
        out = self._process(value) if self.spans is None else self.spans.project(value, self._process)
        if out.serving is not None:
            yield Row(k=out.stream_id, v=out.serving)
        if out.dead_letter is not None:
            yield DEAD_LETTERS, Row(k=out.stream_id, v=out.dead_letter)
        for table, values in out.lake:
            yield LAKE[table], Row(*values)

    def close(self) -> None:
        if self.spans is not None:
            self.spans.flush()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="AgentFlow projections on Flink")
    p.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    p.add_argument("--topic-prefix", default="agentflow")
    p.add_argument("--group-id", default="agentflow-flink-projections")
    p.add_argument("--jdbc-url", required=True, help="jdbc:postgresql://host:port/db (Iceberg catalog)")
    p.add_argument("--jdbc-user", default="")
    p.add_argument("--jdbc-password", default="")
    p.add_argument("--warehouse", required=True, help="Iceberg warehouse URI, e.g. file:///data/warehouse")
    p.add_argument("--catalog-name", default="agentflow")
    p.add_argument("--checkpoint-dir", default="", help="file:// or s3:// URI for checkpoints")
    p.add_argument("--checkpoint-interval-ms", type=int, default=5000)
    p.add_argument("--restore", default="", help="checkpoint path to resume from")
    p.add_argument("--jars", default="", help="directory of connector jars (local runs)")
    p.add_argument(
        "--conf", action="append", default=[], metavar="KEY=VALUE",
        help="a Flink configuration option (repeatable), e.g. rest.port=8081",
    )  # fmt: skip
    p.add_argument("--parallelism", type=int, default=1)
    p.add_argument("--bundle-ms", type=int, default=5, help="Python bundle time: latency vs overhead")
    p.add_argument(
        "--buffer-timeout-ms", type=int, default=5, help="network buffer flush between operators (Flink: 100)"
    )
    p.add_argument("--no-lake", action="store_true", help="skip the Iceberg sink")
    p.add_argument(
        "--execution-mode",
        choices=("process", "thread"),
        default="process",
        help="Python workers in separate processes (gRPC) or embedded in the task threads (PEMJA)",
    )
    return p.parse_args(argv)


def python_environment(
    args: argparse.Namespace, pipeline: str, extra: dict[str, str] | None = None
) -> StreamExecutionEnvironment:
    """The job's PyFlink settings (bundles, execution mode, interpreter, checkpoints, ``--conf``), also
    those of the benchmark's passthrough anchor (bench/flink_passthrough.py), so the anchor runs as
    this job does. ``extra`` goes in before the ``--conf`` overrides."""
    config = Configuration()
    config.set_string("python.fn-execution.bundle.time", str(args.bundle_ms))
    config.set_string("python.fn-execution.bundle.size", "1000")
    config.set_string("python.execution-mode", args.execution_mode)
    config.set_string("python.executable", sys.executable)
    config.set_string("python.client.executable", sys.executable)
    config.set_string("pipeline.name", pipeline)
    if args.checkpoint_dir:
        config.set_string("execution.checkpointing.dir", args.checkpoint_dir)
    for key, value in (extra or {}).items():
        config.set_string(key, value)
    for option in args.conf:
        key, _, value = option.partition("=")
        config.set_string(key.strip(), value.strip())
    env = StreamExecutionEnvironment.get_execution_environment(config)
    env.set_parallelism(args.parallelism)
    env.set_buffer_timeout(args.buffer_timeout_ms)
    env.enable_checkpointing(args.checkpoint_interval_ms, CheckpointingMode.EXACTLY_ONCE)
    return env


def build(args: argparse.Namespace) -> StreamExecutionEnvironment:
    extra: dict[str, str] = {}
    if args.checkpoint_dir:
        extra["execution.checkpointing.externalized-checkpoint-retention"] = "RETAIN_ON_CANCELLATION"
        extra["execution.checkpointing.num-retained"] = "2"
    if args.restore:
        extra["execution.state-recovery.path"] = args.restore
    env = python_environment(args, "agentflow-projections", extra)
    if args.jars:
        env.add_jars(*sorted(p.resolve().as_uri() for p in Path(args.jars).glob("*.jar")))
    for package in ("domain", "projections"):
        env.add_python_file(str(REPO / package))

    source = (
        KafkaSource.builder()
        .set_bootstrap_servers(args.bootstrap)
        .set_topics(f"{args.topic_prefix}.events")
        .set_group_id(args.group_id)
        .set_starting_offsets(KafkaOffsetsInitializer.committed_offsets(KafkaOffsetResetStrategy.EARLIEST))
        .set_value_only_deserializer(SimpleStringSchema())
        .set_property("commit.offsets.on.checkpoint", "true")
        .build()
    )
    cdc = env.from_source(source, WatermarkStrategy.no_watermarks(), "cdc-events").uid("cdc-events")
    from projections.flink.pipeline import tenant_of

    projected = (
        cdc.key_by(tenant_of, key_type=Types.STRING())
        .process(ProjectEvents(), output_type=KV)
        .uid("project-events")
        .name("decode-validate-dedup-project")
    )
    t_env = StreamTableEnvironment.create(env)
    t_env.create_temporary_view("serving_out", t_env.from_data_stream(projected))
    t_env.create_temporary_view(
        "dead_letter_out", t_env.from_data_stream(projected.get_side_output(DEAD_LETTERS))
    )
    if not args.no_lake:
        for table, tag in LAKE.items():
            t_env.create_temporary_view(
                f"lake_{table}", t_env.from_data_stream(projected.get_side_output(tag))
            )
    for stmt in ddl_statements(args, lake=not args.no_lake):
        t_env.execute_sql(stmt)
    statements = t_env.create_statement_set()
    for stmt in insert_statements(args, lake=not args.no_lake):
        statements.add_insert_sql(stmt)
    statements.attach_as_datastream()
    return env


def main(argv: list[str] | None = None) -> None:
    env = build(parse_args(argv))
    env.execute("agentflow-projections")


if __name__ == "__main__":
    main()

"""The distributed benchmark's Flink anchor: a job that only deserialises the CDC records and forwards them.

    <prefix>.events (Debezium, from the earliest offset, a group of its own)
      -> rebalance (the network hop the projection job's key_by makes) -> Python map: json.loads, key
      by stream id -> <prefix>.passthrough (the projection job's Kafka sink: Table API, raw key and value,
      at-least-once)

Same PyFlink settings as projections/flink/job.py (execution mode, bundle size and time, buffer timeout,
checkpoint interval and mode, parallelism): what the projection job does beyond this is its own work
(upcast, validate, dedup, project, keyed state). Runs in the PyFlink virtualenv, started by
bench/passthrough_anchor.py through services/distributed/flink_job.py.
"""

from __future__ import annotations

import argparse
from typing import Any

from pyflink.common import Row, Types, WatermarkStrategy
from pyflink.common.serialization import SimpleStringSchema
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.datastream.connectors.kafka import KafkaOffsetsInitializer, KafkaSource
from pyflink.table import StreamTableEnvironment

from projections.flink.job import python_environment

KV = Types.ROW_NAMED(["k", "v"], [Types.STRING(), Types.STRING()])
SINK = """CREATE TEMPORARY TABLE passthrough_sink (k STRING, v STRING) WITH (
  'connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{bootstrap}',
  'properties.linger.ms' = '1', 'key.format' = 'raw', 'key.fields' = 'k', 'value.format' = 'raw',
  'value.fields-include' = 'EXCEPT_KEY', 'sink.delivery-guarantee' = 'at-least-once'
)"""


def forward(value: str | None) -> Any:
    """Deserialise and forward: the record as it came, keyed by its stream id."""
    import json

    record = json.loads(value) if value else None
    key = record.get("stream_id") if isinstance(record, dict) else None
    return Row(k=key if isinstance(key, str) else "", v=value)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Kafka -> Flink passthrough (benchmark anchor)")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic-prefix", default="agentflow")
    p.add_argument("--group-id", required=True)
    p.add_argument("--checkpoint-dir", default="")
    p.add_argument("--checkpoint-interval-ms", type=int, default=5000)
    p.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--parallelism", type=int, default=1)
    p.add_argument("--bundle-ms", type=int, default=5)
    p.add_argument("--buffer-timeout-ms", type=int, default=5)
    p.add_argument("--execution-mode", choices=("process", "thread"), default="process")
    return p.parse_args(argv)


def build(args: argparse.Namespace) -> StreamExecutionEnvironment:
    env = python_environment(args, "agentflow-passthrough")  # the projection job's own settings
    source = (
        KafkaSource.builder()
        .set_bootstrap_servers(args.bootstrap)
        .set_topics(f"{args.topic_prefix}.events")
        .set_group_id(args.group_id)
        .set_starting_offsets(KafkaOffsetsInitializer.earliest())
        .set_value_only_deserializer(SimpleStringSchema())
        .build()
    )
    cdc = env.from_source(source, WatermarkStrategy.no_watermarks(), "cdc-events")
    forwarded = cdc.rebalance().map(forward, output_type=KV).name("deserialise-forward")
    t_env = StreamTableEnvironment.create(env)
    t_env.create_temporary_view("passthrough_out", t_env.from_data_stream(forwarded))
    t_env.execute_sql(SINK.format(topic=f"{args.topic_prefix}.passthrough", bootstrap=args.bootstrap))
    statements = t_env.create_statement_set()
    statements.add_insert_sql("INSERT INTO passthrough_sink SELECT k, v FROM passthrough_out")
    statements.attach_as_datastream()
    return env


def main(argv: list[str] | None = None) -> None:
    build(parse_args(argv)).execute("agentflow-passthrough")


if __name__ == "__main__":
    main()

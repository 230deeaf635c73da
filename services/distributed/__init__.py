"""The distributed deployment's JVM engines (Kafka KRaft broker, Kafka Connect + Debezium) run from
Maven Central jars: fetched by :mod:`connectors.jars`, started by :mod:`.kafka_broker` and
:mod:`.kafka_connect` as plain ``java`` child processes on 127.0.0.1."""

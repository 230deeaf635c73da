"""The pgbench anchor's script runs against the current ``events`` schema: pgbench's own count of
transactions is what landed in the scratch copy, every transaction a new stream of versions 1..rows, and
the event store itself is untouched."""

from __future__ import annotations

import psycopg
import pytest

from bench.pgbench_anchor import create_scratch_table, run_pgbench
from connectors.postgres_cluster import DATABASE, SUPERUSER, PostgresCluster

pytestmark = pytest.mark.integration


def test_pgbench_inserts_event_shaped_rows_into_a_scratch_copy(pg_cluster: object, pg_url: str) -> None:
    if not isinstance(pg_cluster, PostgresCluster):
        pytest.skip("pgbench runs against a cluster of our own (AGENTFLOW_TEST_PG_URL is set)")
    create_scratch_table(pg_cluster)
    try:
        result = run_pgbench(pg_cluster, clients=2, rows=3, seconds=1)
        with psycopg.connect(host="127.0.0.1", port=pg_cluster.port, user=SUPERUSER, dbname=DATABASE) as conn:
            rows, streams, shapes = conn.execute(
                "SELECT count(*), count(DISTINCT stream_id), "
                "count(*) FILTER (WHERE data->>'session_id' = stream_id "
                "AND metadata = '{\"actor\": \"bench\"}') FROM bench_events"
            ).fetchone() or (0, 0, 0)
            versions = conn.execute(
                "SELECT DISTINCT array_agg(stream_version ORDER BY stream_version) FROM bench_events "
                "GROUP BY stream_id"
            ).fetchall()
            store = conn.execute(
                "SELECT count(*), (SELECT is_called FROM events_position_seq) FROM events"
            ).fetchone()
    finally:
        with psycopg.connect(host="127.0.0.1", port=pg_cluster.port, user=SUPERUSER, dbname=DATABASE,
                             autocommit=True) as conn:  # fmt: skip
            conn.execute("DROP TABLE IF EXISTS bench_events")
    assert result["failed"] == 0
    assert result["transactions"] > 0
    assert streams == result["transactions"]
    assert rows == shapes == 3 * result["transactions"]
    assert versions == [([1, 2, 3],)]
    assert store == (0, False)

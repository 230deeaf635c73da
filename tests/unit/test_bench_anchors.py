"""The embedded benchmark's anchor ratios, the previous run kept beside the new one, and the reading of
pgbench's report (bench/anchors.py, bench/pgbench_anchor.py)."""

from __future__ import annotations

import pytest

from bench.anchors import anchor_ratios, previous_run, ratio_cell, summarize_anchors
from bench.passthrough_anchor import steady_rate
from bench.pgbench_anchor import parse_output

PGBENCH_15_REPORT = """pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: /tmp/af-pgbench-x/insert.sql
scaling factor: 1
query mode: prepared
number of clients: 8
number of threads: 2
maximum number of tries: 1
duration: 5 s
number of transactions actually processed: 10632
number of failed transactions: 0 (0.000%)
latency average = 3.760 ms
initial connection time = 9.413 ms
tps = 2127.654321 (without initial connection time)
"""


def _raw() -> dict[str, object]:
    pgbench = {
        "single_1_client": {"rows_per_s": 500.0, "latency_ms_p50": 1.5, "latency_ms_p99": 4.0},
        "single_8_clients": {"rows_per_s": 2000.0, "latency_ms_p50": 3.0, "latency_ms_p99": 9.0},
        "batch100_8_clients": {"rows_per_s": 40000.0, "latency_ms_p50": 20.0, "latency_ms_p99": 60.0},
    }
    bare = {"per_s": 20000.0, "p50_ms": 1.6, "p99_ms": 4.0}
    return {"append": {"pgbench": pgbench}, "http": {"bare_litestar": bare}}


def test_every_anchored_figure_is_divided_by_its_anchors() -> None:
    anchors = summarize_anchors(_raw())
    summary = {
        "append_single_8_writers_events_per_s": 1500.0,
        "http_commands_per_s": 1000.0,
        "reads_per_s": 15000.0,
        "reads_p99_ms": 10.0,
        "freshness_p50_ms": 20.0,
    }
    ratios = anchor_ratios(summary, anchors)
    assert ratios["append_single_8_writers_events_per_s"] == {"pgbench_single_8_clients_rows_per_s": 0.75}
    assert ratios["http_commands_per_s"] == {
        "pgbench_single_8_clients_rows_per_s": 0.5, "bare_litestar_per_s": 0.05,
    }  # fmt: skip
    assert ratios["reads_per_s"] == {"bare_litestar_per_s": 0.75}
    assert ratios["reads_p99_ms"] == {"bare_litestar_p99_ms": 2.5}
    assert "freshness_p50_ms" not in ratios  # nothing underneath bounds it
    cell = ratio_cell(ratios["http_commands_per_s"])
    assert cell == "0.5 of pgbench 1-row, 8 clients; 0.05 of bare Litestar"


def test_a_figure_whose_anchor_did_not_run_has_no_ratio() -> None:
    raw = _raw()
    raw["append"] = {}  # --skip-append: no pgbench
    ratios = anchor_ratios({"http_commands_per_s": 1000.0}, summarize_anchors(raw))
    assert ratios == {"http_commands_per_s": {"bare_litestar_per_s": 0.05}}


def test_the_previous_run_is_kept_without_its_own_previous() -> None:
    older = {"machine": {"date": "2026-01-01"}, "summary": {"reads_per_s": 1.0}}
    previous = {
        "machine": {"date": "2026-02-01"}, "summary": {"reads_per_s": 4000.0, "gone_per_s": 3.0},
        "anchors": {"bare_litestar_per_s": 16000.0}, "ratios": {"reads_per_s": {"bare_litestar_per_s": 0.25}},
        "previous": older,
    }  # fmt: skip
    kept = previous_run(previous, {"reads_per_s": 5000.0, "new_per_s": 1.0}, {"bare_litestar_per_s": 20000.0})
    assert kept is not None
    assert kept["machine"]["date"] == "2026-02-01"
    assert kept["summary"] == previous["summary"]
    assert kept["ratios"] == previous["ratios"]
    assert "previous" not in kept
    assert kept["new_over_previous"] == {"reads_per_s": 1.25, "bare_litestar_per_s": 1.25}
    assert previous_run(None, {"reads_per_s": 5000.0}, {}) is None


def test_pgbench_report_is_read_as_rows_per_second() -> None:
    parsed = parse_output(PGBENCH_15_REPORT, clients=8, rows=100, latencies=[1.0, 2.0, 3.0])
    assert parsed["transactions"] == 10632
    assert parsed["failed"] == 0
    assert parsed["transactions_per_s"] == 2127.7
    assert parsed["rows_per_s"] == pytest.approx(212765.4, abs=0.1)
    assert parsed["latency_ms_p50"] == 2.0


def test_an_unexpected_pgbench_report_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="unexpected pgbench output"):
        parse_output("pgbench: error: connection refused\n", clients=8, rows=1, latencies=[])


def test_the_passthrough_rate_leaves_out_start_up_and_tail() -> None:
    # nothing for 10 s (JVM start), then 100 records/s up to 1000, then a slow tail
    samples = [(float(t), 0) for t in range(10)] + [(10.0 + i, 100 * i) for i in range(11)]
    samples += [(21.0, 1000), (30.0, 1000)]
    assert steady_rate(samples, total=1000) == pytest.approx(100.0)

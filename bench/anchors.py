"""The benchmarks' anchors (what the parts underneath do on the same machine, in the same run) and each
figure's ratio to its anchors; and the previous run kept beside the new one.

Figures are comparable only within a run (the machine is shared); a ratio to an anchor of the same run
is what carries from one run to the next.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# embedded figure -> the anchors it is bounded by. Freshness has none: nothing underneath does what it
# measures.
ANCHORED: dict[str, tuple[str, ...]] = {
    "append_single_1_writer_events_per_s": ("pgbench_single_1_client_rows_per_s",),
    "append_single_8_writers_events_per_s": ("pgbench_single_8_clients_rows_per_s",),
    "append_batch100_events_per_s": ("pgbench_batch100_8_clients_rows_per_s",),
    "http_commands_per_s": ("pgbench_single_8_clients_rows_per_s", "bare_litestar_per_s"),
    "http_commands_p50_ms": ("bare_litestar_p50_ms",),
    "http_commands_p99_ms": ("bare_litestar_p99_ms",),
    "reads_per_s": ("bare_litestar_per_s",),
    "reads_p50_ms": ("bare_litestar_p50_ms",),
    "reads_p99_ms": ("bare_litestar_p99_ms",),
}

# distributed figure -> the Kafka -> Flink passthrough (bench/passthrough_anchor.py)
DISTRIBUTED_ANCHORED: dict[str, tuple[str, ...]] = {
    "sustained_events_per_s": ("passthrough_events_per_s",),
    "max_pipeline_events_per_s": ("passthrough_events_per_s",),
}

LABELS = {
    "passthrough_events_per_s": "Kafka → Flink passthrough",
    "pgbench_single_1_client_rows_per_s": "pgbench 1-row, 1 client",
    "pgbench_single_8_clients_rows_per_s": "pgbench 1-row, 8 clients",
    "pgbench_batch100_8_clients_rows_per_s": "pgbench 100-row, 8 clients",
    "bare_litestar_per_s": "bare Litestar",
    "bare_litestar_p50_ms": "bare Litestar p50",
    "bare_litestar_p99_ms": "bare Litestar p99",
}


def summarize_anchors(raw: dict[str, Any]) -> dict[str, float]:
    """The anchor figures of a run's raw results (those that ran)."""
    s: dict[str, float] = {}
    pgb = raw.get("append", {}).get("pgbench", {})
    for run, prefix in (("single_1_client", "pgbench_single_1_client"),
                        ("single_8_clients", "pgbench_single_8_clients"),
                        ("batch100_8_clients", "pgbench_batch100_8_clients")):  # fmt: skip
        if run in pgb:
            s[f"{prefix}_rows_per_s"] = pgb[run]["rows_per_s"]
            s[f"{prefix}_p50_ms"] = pgb[run]["latency_ms_p50"]
            s[f"{prefix}_p99_ms"] = pgb[run]["latency_ms_p99"]
    bare = raw.get("http", {}).get("bare_litestar")
    if isinstance(bare, dict):
        s["bare_litestar_per_s"] = bare["per_s"]
        s["bare_litestar_p50_ms"] = bare["p50_ms"]
        s["bare_litestar_p99_ms"] = bare["p99_ms"]
    return s


def _ratio(value: float, base: float) -> float | None:
    return round(value / base, 3) if base else None


def anchor_ratios(
    summary: Mapping[str, float],
    anchors: Mapping[str, float],
    anchored: Mapping[str, tuple[str, ...]] = ANCHORED,
) -> dict[str, dict[str, float]]:
    """figure -> {anchor: figure / anchor} for every figure and anchor of the run."""
    out: dict[str, dict[str, float]] = {}
    for name, value in summary.items():
        ratios = {a: r for a in anchored.get(name, ()) if a in anchors
                  if (r := _ratio(value, anchors[a])) is not None}  # fmt: skip
        if ratios:
            out[name] = ratios
    return out


def previous_run(previous: dict[str, Any] | None, summary: Mapping[str, Any],
                 anchors: Mapping[str, float]) -> dict[str, Any] | None:  # fmt: skip
    """The previous run's figures, anchors and ratios (not its own previous), with new / previous."""
    if not previous:
        return None
    prev_summary: dict[str, Any] = previous.get("summary", {})
    prev_anchors: dict[str, float] = previous.get("anchors", {})
    new_over_previous = {
        name: r
        for current, prior in ((summary, prev_summary), (anchors, prev_anchors))
        for name, value in current.items()
        if _number(value) and _number(prior.get(name)) and (r := _ratio(value, prior[name])) is not None
    }
    return {
        "machine": previous.get("machine", {}),
        "summary": prev_summary,
        "anchors": prev_anchors,
        "ratios": previous.get("ratios", {}),
        "new_over_previous": new_over_previous,
    }


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def ratio_cell(ratios: dict[str, float]) -> str:
    """'0.21 of pgbench 1-row, 8 clients; 0.05 of bare Litestar' for a Markdown table."""
    return "; ".join(f"{r:g} of {LABELS.get(a, a)}" for a, r in ratios.items()) or "—"

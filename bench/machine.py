"""What machine a benchmark ran on, recorded next to its numbers."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from typing import Any


def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    mem_gib = 0.0
    try:
        with open("/proc/meminfo") as f:
            kib = next((int(ln.split()[1]) for ln in f if ln.startswith("MemTotal")), 0)
        mem_gib = round(kib / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# the server's environment in the benchmarks: the per-key budgets stay on (their cost is measured) but
# far above what one machine can send, so no request is refused. AGENTFLOW_BENCH_RATE_LIMITS=off turns them
# off (budget 0) instead: `bench.compare --candidate-env` uses it to measure what the budgets cost.
_BUDGET = "0" if os.environ.get("AGENTFLOW_BENCH_RATE_LIMITS") == "off" else "1000000000"
UNTHROTTLED = {"AGENTFLOW_RATE_LIMIT_READ_RPM": _BUDGET, "AGENTFLOW_RATE_LIMIT_WRITE_RPM": _BUDGET}

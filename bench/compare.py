"""`make bench-compare BASELINE=<git ref>`: the embedded HTTP figures of two commits, side by side.

Each commit is checked out into a temporary worktree and its own ``bench.run --skip-append`` runs
there (its own code, this checkout's virtualenv). The two alternate, baseline first, for ``--rounds``
rounds, so drift of a shared machine falls on both; the report gives each figure's median per commit
and the candidate/baseline ratio. ``--candidate-env NAME=VALUE`` (repeatable) adds a third side in the
same rounds: the candidate again, with that environment (e.g. ``AGENTFLOW_BENCH_RATE_LIMITS=off``, to
see what the rate limits cost apart from the rest); ``--also REF`` another commit, as a side of its own (e.g.
the build before a change, when the baseline is an older one). Writes docs/benchmarks/compare-latest.json
and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.machine import machine_info

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "benchmarks"
FIGURES = (
    "reads_per_s", "reads_p50_ms", "reads_p99_ms",
    "http_commands_per_s", "http_commands_p50_ms", "http_commands_p99_ms",
    "freshness_p50_ms", "freshness_p95_ms", "freshness_p99_ms",
)  # fmt: skip


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def _run_once(tree: Path, seconds: int, commands: int, extra_env: dict[str, str]) -> dict[str, float]:
    env = {**os.environ, **extra_env, "PYTHONPATH": str(tree)}
    argv = [sys.executable, "-m", "bench.run", "--skip-append"]
    argv += ["--seconds", str(seconds), "--commands", str(commands)]
    subprocess.run(argv, cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)
    latest = json.loads((tree / "docs" / "benchmarks" / "embedded-latest.json").read_text())
    summary: dict[str, float] = latest["summary"]
    return summary


def _ratio(value: float, baseline: float) -> str:
    return f"{value / baseline:.2f}" if baseline else "—"


def render(result: dict[str, Any]) -> str:
    m, b, c = result["machine"], result["baseline"], result["candidate"]
    extra = result.get("candidate_env")
    also = result.get("also")
    lines = [
        "# Embedded benchmark: two commits side by side",
        "",
        f"{m['date']} · {m['cpu']} · {m['cores']} cores · {m['memory_gib']} GiB · Python {m['python']}",
        "",
        f"Baseline `{b['ref']}` ({b['commit'][:10]}), candidate `{c['ref']}` ({c['commit'][:10]}); "
        f"{result['rounds']} alternating rounds, medians."
        + (f" Also: `{also['ref']}` ({also['commit'][:10]})." if also else "")
        + (f" Third side: the candidate with `{' '.join(extra['env'])}`." if extra else ""),
        "",
        "| figure | baseline | candidate | candidate / baseline |"
        + (f" {also['ref']} | {also['ref']} / baseline | candidate / {also['ref']} |" if also else "")
        + (" candidate with env | with env / baseline |" if extra else ""),
        "|---|---|---|---|" + ("---|---|---|" if also else "") + ("---|---|" if extra else ""),
    ]
    for name in FIGURES:
        bv, cv = b["median"].get(name), c["median"].get(name)
        if bv is None or cv is None:
            continue
        row = f"| {name} | {bv:g} | {cv:g} | {_ratio(cv, bv)} |"
        if also:
            av = also["median"].get(name)
            row += f" {av:g} | {_ratio(av, bv)} | {_ratio(cv, av)} |" if av is not None else " — | — | — |"
        if extra:
            ev = extra["median"].get(name)
            row += f" {ev:g} | {_ratio(ev, bv)} |" if ev is not None else " — | — |"
        lines.append(row)
    lines += ["", "Raw figures: `compare-latest.json`. Run with `make bench-compare BASELINE=<ref>`."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", required=True, help="git ref of the build to compare with")
    parser.add_argument("--candidate", default="HEAD", help="git ref of the build under test")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--commands", type=int, default=250)
    parser.add_argument("--candidate-env", action="append", default=[], metavar="NAME=VALUE",
                        help="also run the candidate with this environment, as a third side")  # fmt: skip
    parser.add_argument("--also", help="git ref of another build to run as a side of its own")
    args = parser.parse_args()
    candidate_env = dict(item.split("=", 1) for item in args.candidate_env)
    sides = {"baseline": args.baseline, "candidate": args.candidate}
    if args.also:
        sides["also"] = args.also
    commits = {side: _git("rev-parse", ref) for side, ref in sides.items()}  # fixed before anything runs
    # each side run: the tree it runs in and its extra environment
    plan: dict[str, tuple[str, dict[str, str]]] = {side: (side, {}) for side in sides}
    if candidate_env:
        plan["candidate_env"] = ("candidate", candidate_env)
    runs: dict[str, list[dict[str, float]]] = {side: [] for side in plan}
    with tempfile.TemporaryDirectory(prefix="af-bench-compare-") as tmp:
        trees = {side: Path(tmp) / side for side in sides}
        for side in sides:
            _git("worktree", "add", "--detach", str(trees[side]), commits[side])
        try:
            for r in range(args.rounds):
                for side, (tree, env) in plan.items():
                    print(f"round {r + 1}/{args.rounds}: {side} ({sides[tree]}) ...", flush=True)
                    runs[side].append(_run_once(trees[tree], args.seconds, args.commands, env))
        finally:
            for path in trees.values():
                _git("worktree", "remove", "--force", str(path))
    result: dict[str, Any] = {"machine": machine_info(), "rounds": args.rounds}
    for side, (tree, env) in plan.items():
        names = set().union(*(run.keys() for run in runs[side]))
        result[side] = {
            "ref": sides[tree],
            "commit": commits[tree],
            "env": [f"{k}={v}" for k, v in env.items()],
            "median": {n: statistics.median(run[n] for run in runs[side] if n in run) for n in sorted(names)},
            "runs": runs[side],
        }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "compare-latest.json").write_text(json.dumps(result, indent=2) + "\n")
    md = render(result)
    (OUT / "compare-latest.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()

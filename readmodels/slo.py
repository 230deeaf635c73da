"""Service level objectives over in-process measurements (``GET /v1/slo``): API latency per route class,
read-model freshness (recorded in the event store -> applied to the serving read model, per event) and
the error rate (5xx answers; command rejections are reported beside it). The HTTP app measures its
requests into the tracker and the serving projector reports applied events, each from one observation
point in services/slo.py that feeds the Prometheus histograms the same numbers: the tracker keeps the
per-minute rings the rolling windows below need, which cumulative histograms cannot give in-process.

Measurements go into per-minute buckets (a ring as long as the longest window), so recording is a
couple of integer increments. Each objective is "``target`` of events are good over ``window``"; its
error budget is ``1 - target`` of them, and its burn rate over a shorter window (1h, 6h) is the bad
fraction there divided by the budget (1 = on track to spend exactly the budget over the window).

Objectives default to DEFAULT_OBJECTIVES; ``AGENTFLOW_SLO_FILE`` (YAML/JSON ``{slos: [...]}``) or
``AGENTFLOW_SLO_OVERRIDES`` (JSON ``{name: {target, threshold_ms|threshold_seconds, window_hours}}``)
change them.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from domain.events import RecordedEvent

MINUTE = 60
BURN_WINDOWS = {"1h": 60, "6h": 360}
# latency histogram bucket upper bounds (ms) for the percentiles
LATENCY_BOUNDS_MS = (1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000,
                     1500, 2000, 3000, 5000, 10000, 30000)  # fmt: skip
FRESHNESS_BOUNDS_S = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60, 300)


@dataclass(frozen=True)
class Objective:
    name: str
    description: str
    sli: str  # latency:<class> | freshness | availability
    target: float  # fraction of good events, e.g. 0.99
    threshold: float | None  # ms for latency, seconds for freshness
    window_hours: int = 24


DEFAULT_OBJECTIVES = (
    Objective("api_read_latency", "Reads (entities, metrics, search, catalog) answer within 100 ms",
              "latency:read", 0.99, 100.0),
    Objective("api_command_latency", "Commands answer within 250 ms", "latency:command", 0.99, 250.0),
    Objective("api_query_latency", "Queries and batches answer within 1 s", "latency:query", 0.99, 1000.0),
    Objective("freshness", "An event is applied to the serving read models within 2 s of being recorded",
              "freshness", 0.99, 2.0),
    Objective("api_availability", "Requests do not fail with a server error (5xx)", "availability",
              0.999, None),
)  # fmt: skip


class _Series:
    """Per-minute (count, bad, histogram) over a ring of ``minutes``."""

    __slots__ = ("bounds", "buckets", "minutes")

    def __init__(self, minutes: int, bounds: Sequence[float]) -> None:
        self.minutes = minutes
        self.bounds = tuple(bounds)
        # minute index -> [minute, count, bad(by threshold key), histogram]
        self.buckets: dict[int, list[Any]] = {}

    def _bucket(self, minute: int) -> list[Any]:
        slot = minute % self.minutes
        b = self.buckets.get(slot)
        if b is None or b[0] != minute:
            b = [minute, 0, 0, [0] * (len(self.bounds) + 1)]
            self.buckets[slot] = b
        return b

    def add(self, now: float, value: float, bad: bool) -> None:
        minute = int(now // MINUTE)
        b = self.buckets.get(minute % self.minutes)  # the current minute's, nearly always (no call)
        if b is None or b[0] != minute:
            b = self._bucket(minute)
        b[1] += 1
        if bad:
            b[2] += 1
        b[3][bisect.bisect_left(self.bounds, value)] += 1

    def window(self, now: float, minutes: int) -> tuple[int, int, list[int]]:
        current = int(now // MINUTE)
        total = bad = 0
        hist = [0] * (len(self.bounds) + 1)
        for b in list(self.buckets.values()):
            if current - minutes < b[0] <= current:
                total += b[1]
                bad += b[2]
                for i, n in enumerate(b[3]):
                    hist[i] += n
        return total, bad, hist

    def percentile(self, hist: list[int], q: float) -> float | None:
        total = sum(hist)
        if not total:
            return None
        rank = q * total
        seen = 0
        for i, n in enumerate(hist):
            seen += n
            if seen >= rank:
                return self.bounds[i] if i < len(self.bounds) else float("inf")
        return None


class SloTracker:
    def __init__(
        self,
        objectives: Sequence[Objective] = DEFAULT_OBJECTIVES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.objectives = tuple(objectives)
        self.clock = clock
        self.started_at = clock()
        minutes = max([o.window_hours * 60 for o in self.objectives] + list(BURN_WINDOWS.values()))
        self._lock = threading.Lock()
        self._pending: list[Callable[[], None]] = []
        self._latency: dict[str, tuple[float, _Series]] = {}
        for o in self.objectives:
            if o.sli.startswith("latency:") and o.threshold is not None:
                self._latency[o.sli.split(":", 1)[1]] = (o.threshold, _Series(minutes, LATENCY_BOUNDS_MS))
        fresh = next((o for o in self.objectives if o.sli == "freshness"), None)
        self._fresh_threshold = fresh.threshold if fresh and fresh.threshold is not None else 2.0
        self._freshness = _Series(minutes, FRESHNESS_BOUNDS_S)
        self._requests = _Series(minutes, (500,))
        self._rejections = _Series(minutes, (1,))

    # ---- recording (hot paths: keep cheap) ------------------------------------------------
    def record_request(self, cls: str | None, status: int, seconds: float, command: bool) -> None:
        self.record_requests(((cls, status, seconds, command, self.clock()),))

    def record_requests(self, rows: Iterable[tuple[str | None, int, float, bool, float]]) -> None:
        """Answered requests, each ``(class, status, seconds, command, when)`` (``when``: this tracker's
        clock at the answer), under one lock: the front door hands them over in batches (services/slo.py)."""
        latency = self._latency
        add_request, add_rejection = self._requests.add, self._rejections.add
        with self._lock:
            for cls, status, seconds, command, now in rows:
                add_request(now, status, status >= 500)
                if cls is not None and (lat := latency.get(cls)) is not None:
                    ms = seconds * 1000.0
                    lat[1].add(now, ms, ms > lat[0])
                if command:
                    if 400 <= status < 500 and status not in (401, 404, 429):
                        add_rejection(now, 1, True)
                    else:
                        add_rejection(now, 0, False)

    def add_pending(self, fold: Callable[[], None]) -> None:
        """``fold`` hands over requests recorded but not yet given to ``record_requests``: ``report`` calls
        it first, so a report counts every request answered before it."""
        self._pending.append(fold)

    def record_applied(self, events: Sequence[RecordedEvent], watermark: int = 0) -> None:
        """Per event: seconds from recorded in the store to applied to the serving read model. (The
        server feeds ``record_freshness`` from services/slo.py, which gives the same lags to Prometheus.)"""
        if events:
            now = self.clock()
            self.record_freshness([max(0.0, now - e.recorded_at.timestamp()) for e in events], now)

    def record_freshness(self, lags: Sequence[float], now: float) -> None:
        """Commit -> applied lags (seconds) of events applied at ``now``."""
        threshold = self._fresh_threshold
        with self._lock:
            add = self._freshness.add
            for lag in lags:
                add(now, lag, lag > threshold)

    # ---- report -------------------------------------------------------------------------
    def _series_for(self, o: Objective) -> tuple[_Series | None, str]:
        if o.sli == "freshness":
            return self._freshness, "s"
        if o.sli == "availability":
            return self._requests, ""
        lat = self._latency.get(o.sli.split(":", 1)[1])
        return (lat[1] if lat else None), "ms"

    def report(self) -> dict[str, Any]:
        for fold in self._pending:
            fold()
        now = self.clock()
        out = []
        with self._lock:
            for o in self.objectives:
                series, unit = self._series_for(o)
                out.append(self._status(o, series, unit, now))
            r_total, r_bad, _ = self._rejections.window(now, 60)
            req_total, req_bad, _ = self._requests.window(now, 60)
        return {
            "slos": out,
            "measured_since": _iso(self.started_at),
            "computed_at": _iso(now),
            "error_rates_1h": {
                "requests": req_total,
                "server_errors": req_bad,
                "server_error_rate": round(req_bad / req_total, 6) if req_total else 0.0,
                "commands": r_total,
                "command_rejections": r_bad,
                "command_rejection_rate": round(r_bad / r_total, 6) if r_total else 0.0,
            },
        }

    def _status(self, o: Objective, series: _Series | None, unit: str, now: float) -> dict[str, Any]:
        minutes = o.window_hours * 60
        total, bad, hist = series.window(now, minutes) if series else (0, 0, [])
        budget = 1.0 - o.target
        current = (total - bad) / total if total else 1.0
        consumed = (bad / total) / budget if total and budget > 0 else (0.0 if not bad else 1.0)
        remaining = max(0.0, 1.0 - consumed)
        burn: dict[str, float | None] = {}
        for label, m in BURN_WINDOWS.items():
            t, b, _ = series.window(now, m) if series else (0, 0, [])
            burn[label] = round((b / t) / budget, 4) if t and budget > 0 else (0.0 if t else None)
        if total and current < o.target:
            status = "breached"
        elif remaining < 0.2 or any(v is not None and v > 6 for v in burn.values()):
            status = "at_risk"
        else:
            status = "healthy"
        body: dict[str, Any] = {
            "name": o.name,
            "description": o.description,
            "sli": o.sli,
            "target": o.target,
            "threshold": o.threshold,
            "threshold_unit": unit or None,
            "current": round(current, 6),
            "error_budget_remaining": round(remaining, 4),
            "status": status,
            "window_days": round(o.window_hours / 24, 3),
            "window_hours": o.window_hours,
            "events": {"total": total, "good": total - bad, "bad": bad},
            "error_budget": {
                "allowed_bad_fraction": round(budget, 6),
                "allowed_bad_events": round(budget * total, 3),
                "consumed": round(min(consumed, 1e9), 4),
                "remaining": round(remaining, 4),
            },
            "burn_rates": burn,
            "no_data": total == 0,
        }
        if series is not None and series is not self._requests and hist:
            body["percentiles"] = {f"p{int(q * 100)}": series.percentile(hist, q) for q in (0.5, 0.95, 0.99)}
        return body


def _iso(ts: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def objectives_from_settings(
    slo_file: Path | None = None, overrides: dict[str, Any] | None = None
) -> tuple[Objective, ...]:
    """DEFAULT_OBJECTIVES, replaced by the objectives of ``slo_file`` (``AGENTFLOW_SLO_FILE``) and
    adjusted by ``overrides`` (``AGENTFLOW_SLO_OVERRIDES``)."""
    objectives = {o.name: o for o in DEFAULT_OBJECTIVES}
    if slo_file is not None:
        import yaml

        doc = yaml.safe_load(Path(slo_file).read_text(encoding="utf-8")) or {}
        objectives = {}
        for item in doc.get("slos", []):
            o = _objective(item)
            objectives[o.name] = o
    for name, changes in (overrides or {}).items():
        if name not in objectives:
            raise ValueError(f"AGENTFLOW_SLO_OVERRIDES names unknown objective {name!r}")
        objectives[name] = _adjust(objectives[name], changes)
    return tuple(objectives.values())


def _objective(item: dict[str, Any]) -> Objective:
    sli = str(item["sli"])
    if not (sli in ("freshness", "availability") or sli.startswith("latency:")):
        raise ValueError(f"unknown SLI {sli!r} (latency:<read|command|query>, freshness, availability)")
    base = Objective(str(item["name"]), str(item.get("description", "")), sli, 0.99, None)
    return _adjust(base, item)


def _adjust(o: Objective, changes: dict[str, Any]) -> Objective:
    target = float(changes.get("target", o.target))
    if not 0 < target < 1:
        raise ValueError(f"SLO {o.name}: target must be between 0 and 1, not {target}")
    threshold = changes.get(
        "threshold_ms", changes.get("threshold_seconds", changes.get("threshold", o.threshold))
    )
    window = int(changes.get("window_hours", o.window_hours))
    if window < 1:
        raise ValueError(f"SLO {o.name}: window_hours must be at least 1")
    return replace(
        o,
        target=target,
        threshold=float(threshold) if threshold is not None else None,
        window_hours=window,
        description=str(changes.get("description", o.description)),
    )

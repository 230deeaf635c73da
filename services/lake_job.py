"""Lake maintenance, run by ``agentflow lake maintain`` and on a schedule by the worker fleet.

The ``lake_maintain`` Dramatiq actor is declared on the fleet's broker (dramatiq-postgres inside
``agentflow up``, Redis or Postgres in ``agentflow worker`` processes). Exactly one run at a time
per database: a run (scheduled or from the CLI) holds the ``lake-maintenance`` advisory lock and a
second one finds it taken and skips. Exactly one scheduler: every fleet process runs a scheduler
thread, but only the holder of the ``lake-scheduler`` advisory lock enqueues, once every
``lake_maintain_interval_s`` (the first run one interval after it took the lock, so restarts do not
trigger runs). Which engine runs it and why: docs/lake.md.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dramatiq
from dramatiq.broker import Broker
from pyiceberg.catalog.sql import SqlCatalog

from connectors.advisory_lock import SessionLock
from connectors.lake_maintenance import MaintenancePolicy, MaintenanceReport, maintain
from services.config import Settings

log = logging.getLogger("agentflow.lake")

ACTOR_NAME = "lake_maintain"
QUEUE = "lake"
RUN_LOCK = "lake-maintenance"
SCHEDULER_LOCK = "lake-scheduler"
CATALOG_NAME = "agentflow"  # the embedded sink's and Flink's catalog (connectors/iceberg_sink.py)


def policy_from(settings: Settings) -> MaintenancePolicy:
    return MaintenancePolicy(
        target_bytes=settings.lake_target_file_mb * 1024 * 1024,
        older_than_s=settings.lake_snapshot_max_age_s,
        retain_last=settings.lake_retain_snapshots,
    )


def lake_catalog(database_url: str, data_dir: Path | None = None) -> SqlCatalog:
    """The catalog of both deployments' tables (their metadata locations are absolute, so the
    warehouse only matters for creating tables, which maintenance never does)."""
    props: dict[str, Any] = {"uri": database_url}
    if data_dir is not None:
        props["warehouse"] = (Path(data_dir) / "warehouse").resolve().as_uri()
    return SqlCatalog(CATALOG_NAME, **props)


def run_maintenance(
    database_url: str, policy: MaintenancePolicy, data_dir: Path | None = None
) -> MaintenanceReport | None:
    """One maintenance run under the run lock; None when another run holds it."""
    with SessionLock(database_url, RUN_LOCK).held() as got:
        if not got:
            return None
        catalog = lake_catalog(database_url, data_dir)
        try:
            return maintain(catalog, policy)
        finally:
            catalog.close()


class LakeMaintenanceJob:
    """The ``lake_maintain`` actor on ``broker`` and the scheduler thread that enqueues it."""

    def __init__(
        self,
        broker: Broker,
        database_url: str,
        policy: MaintenancePolicy,
        interval_s: float,
        data_dir: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.database_url = database_url
        self.policy = policy
        self.interval_s = interval_s
        self.data_dir = data_dir
        self._clock = clock
        self.runs = 0  # runs this process completed
        self.skipped = 0  # runs this process skipped: another run held the lock
        self.last_report: MaintenanceReport | None = None
        self.finished = threading.Condition()
        self.actor: Any = dramatiq.actor(
            actor_name=ACTOR_NAME, queue_name=QUEUE, broker=broker, max_retries=0,
            time_limit=4 * 3600 * 1000,
        )(self._run)  # fmt: skip
        self._scheduler = SessionLock(database_url, SCHEDULER_LOCK)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, broker: Broker, database_url: str, settings: Settings) -> LakeMaintenanceJob:
        return cls(
            broker, database_url, policy_from(settings), settings.lake_maintain_interval_s,
            data_dir=settings.data_dir,
        )  # fmt: skip

    def _run(self) -> None:
        report = run_maintenance(self.database_url, self.policy, self.data_dir)
        with self.finished:
            if report is None:
                self.skipped += 1
                log.info("lake maintenance skipped: another run holds the lock")
            else:
                self.runs += 1
                self.last_report = report
            self.finished.notify_all()

    def start(self) -> None:
        if self.interval_s <= 0:
            return
        self._thread = threading.Thread(target=self._schedule, name="lake-scheduler", daemon=True)
        self._thread.start()

    def _schedule(self) -> None:
        due: float | None = None
        while not self._stop.is_set():
            if self._scheduler.hold():
                now = self._clock()
                if due is None:
                    due = now + self.interval_s
                elif now >= due:
                    try:
                        self.actor.send()
                    except Exception:
                        log.exception("enqueueing lake maintenance failed (next interval retries)")
                    due = now + self.interval_s
            else:
                due = None  # another process schedules; start over if we take over
            self._stop.wait(min(self.interval_s, 5.0))

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
        self._scheduler.release()

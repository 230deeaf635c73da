"""Wires one API process: event store, read models, read cache, and what keeps the read models current.

``mode="embedded"``: projector threads tail the event store (ClickHouse serving + Iceberg lake).
``mode="distributed"``: Debezium/Kafka/Flink project; this process runs only the ServingLoader
(connectors/serving_loader.py), which applies Flink's serving upserts and owns the watermark.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.engine import Engine

from commands.cache import AggregateCache
from connectors.checkpoints import CheckpointStore
from connectors.clickhouse import ClickHouseStore
from connectors.clickhouse_sink import ClickHouseSink
from connectors.dead_letters import DeadLetter, DeadLetterStore
from connectors.event_store import PostgresEventStore
from connectors.kafka_lag import ConsumerLag
from connectors.secret_box import SecretBox
from connectors.serving_loader import LoaderStatus, ServingLoader
from connectors.tailer import PostgresTailer, TailCursor
from connectors.tracing import traced
from connectors.webhook_store import WebhookStore
from domain.events import RecordedEvent
from projections.runner import ProjectionRunner
from readmodels.read_cache import ReadCache
from services.config import Settings
from services.health_probes import EngineHealth
from services.rebuild import Rebuilds, SinkGate, TailerGate

if TYPE_CHECKING:
    from readmodels.alerts import MetricFn
    from services.alerts.fleet import AlertFleet
    from services.heartbeat import Heartbeat
    from services.lake_job import LakeMaintenanceJob
    from services.legacy_sources import LegacySources
    from services.webhooks.fleet import WebhookFleet

log = logging.getLogger("agentflow.runtime")


MODES = ("embedded", "distributed")


class _Runnable(Protocol):
    name: str

    def run(self, stop: threading.Event) -> None: ...


@dataclass
class _Thread:
    runner: _Runnable
    thread: threading.Thread


class Runtime:
    """What keeps the read models current in this process, and how far they are: projector threads
    (embedded) or the serving loader (distributed), the watermark and waiting for it, freshness, the
    legacy captures, the embedded worker fleet and this process's part of the alert fleet. Built by
    services/bootstrap.py from parts it owns. To the read side it is a ``readmodels.ports.ReadProgress``:
    the watermark, waiting for a position, freshness, catching up the serving sink."""

    def __init__(
        self,
        settings: Settings,
        database_url: str,
        engine: Engine,
        store: PostgresEventStore,
        checkpoints: CheckpointStore,
        dead_letters: DeadLetterStore,
        clickhouse: ClickHouseStore,
        cache: ReadCache,
        webhook_store: WebhookStore,
        aggregates: AggregateCache,
        secret_box: SecretBox,
    ) -> None:
        self.settings = settings
        self.database_url = database_url
        self.mode = settings.deployment
        if self.mode not in MODES:
            raise ValueError(f"unknown deployment mode {self.mode!r} (expected one of {MODES})")
        self.kafka_bootstrap = settings.kafka_bootstrap
        self.topic_prefix = settings.topic_prefix
        # one group per host: every API replica applies every upsert (idempotent) and so knows its
        # own contiguous position; replicas sharing a group would split the partitions between them
        host_group = f"{self.topic_prefix}-serving-loader-{socket.gethostname()}"
        self.loader_group = settings.loader_group or host_group
        if self.mode == "distributed" and not self.kafka_bootstrap:
            raise ValueError("distributed mode needs kafka_bootstrap (host:port of a Kafka broker)")
        self.engine = engine
        self.store = store
        self.checkpoints = checkpoints
        self.dead_letters = dead_letters
        self.clickhouse = clickhouse
        self.cache = cache
        self.aggregates = aggregates  # folded aggregates: every command of this process goes through it
        self.secret_box = secret_box  # the keys of the stored secrets (signing secrets, source passwords)
        self.started_at = time.time()
        self._stop = threading.Event()
        self._threads: list[_Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._position_changed: asyncio.Event | None = None
        self._watermark = 0
        # called with every applied batch (events, watermark) before the watermark is published, in
        # the projector thread (SSE hub, search index); keep them cheap, they delay freshness
        self.applied_listeners: list[Callable[[Sequence[RecordedEvent], int], None]] = []
        self.serving_runner: ProjectionRunner | ServingLoader | None = None
        self.lake_runner: ProjectionRunner | None = None
        self.alerts: AlertFleet | None = None
        self.heartbeat: Heartbeat | None = None
        self._applied = threading.Condition()  # worker threads waiting for a position (wait_applied)
        # the metric as served (readmodels.metric_queries.MetricQueries.measure) for the alert rules; set
        # by the composition root (services/bootstrap.py) before start
        self.metric_source: MetricFn | None = None
        self.legacy: LegacySources | None = None
        # webhooks: the API writes endpoints/deliveries; the fleet (embedded: threads started here,
        # distributed: `agentflow worker` processes) relays events and delivers
        self.webhook_settings = settings.webhooks
        self.webhook_store = webhook_store
        self.webhooks: WebhookFleet | None = None
        self.lake_job: LakeMaintenanceJob | None = None  # scheduled lake maintenance on the fleet's broker
        # read-model rebuilds in this process (services/rebuild.py): the projectors' sinks (and the
        # lake's tailer) sit behind gates the rebuild pauses; set by start() in embedded mode
        # the engines' health, probed in the background (services/health_probes.py)
        self.engine_health = EngineHealth.for_settings(settings, self)
        self.rebuilds = Rebuilds(
            self.store, self.clickhouse, None, lambda: self.watermark, on_swapped=cache.clear
        )

    # ---- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        self.clickhouse.ensure_schema()
        self.engine_health.start()
        self._start_legacy_sources()
        if self.mode == "distributed":
            self._start_distributed()
            self._start_alerts()
            self._start_heartbeat()
            return
        sink = SinkGate(traced(ClickHouseSink(self.clickhouse, self.checkpoints, reject=self._dead_letter),
                               "clickhouse"))  # fmt: skip
        self.rebuilds.serving_gate = sink
        # no NOTIFY (see __init__): the serving tailer is woken by this process's commits and polls
        # every 100 ms for writes from other processes; the lake batches anyway, so it only polls
        serving = PostgresTailer(self.engine, self.database_url, listen=False, poll_interval=0.1)
        self.store.add_commit_listener(serving.wake)
        self.serving_runner = ProjectionRunner("clickhouse", serving, sink, on_applied=self._on_applied)
        self._spawn(self.serving_runner)
        if self.settings.iceberg_enabled:
            from connectors.iceberg_sink import IcebergSink, make_catalog

            catalog = make_catalog(self.database_url, self.settings.data_dir.resolve())
            lake = IcebergSink(
                catalog,
                max_rows=self.settings.iceberg_batch_rows,
                max_age_seconds=self.settings.iceberg_batch_age_s,
                cursor_factory=TailCursor,
            )
            lake_tailer = TailerGate(
                PostgresTailer(self.engine, self.database_url, listen=False, poll_interval=0.25)
            )
            lake_gate = SinkGate(traced(lake, "iceberg"))
            self.lake_runner = ProjectionRunner("iceberg", lake_tailer, lake_gate)
            lake_runner = self.lake_runner
            self.rebuilds.lake_gate, self.rebuilds.lake_tailer = lake_gate, lake_tailer
            self.rebuilds.lake_applied = lambda: lake_runner.status.applied
            self._spawn(self.lake_runner)
        self._start_workers()
        self._start_alerts()
        self._start_heartbeat()

    def _start_workers(self) -> None:
        """Embedded Dramatiq fleet on dramatiq-postgres (services/webhooks): worker threads + relay
        (``AGENTFLOW_WORKERS=0`` leaves them out)."""
        if not self.settings.workers_enabled:
            return
        from services.webhooks.fleet import WebhookFleet

        self.webhooks = WebhookFleet.embedded(self.database_url, self.webhook_settings, box=self.secret_box)
        self.store.add_commit_listener(self.webhooks.wake)
        if self.settings.iceberg_enabled:  # declared before the workers start: they consume its queue
            from services.lake_job import LakeMaintenanceJob

            broker = self.webhooks.broker
            self.lake_job = LakeMaintenanceJob.from_settings(broker, self.database_url, self.settings)
            self.lake_job.start()
        self.webhooks.start()

    def _start_legacy_sources(self) -> None:
        """CDC from legacy databases (services/legacy_sources.py): captures start when sources are
        declared (``AGENTFLOW_LEGACY_SOURCES=0`` leaves it out)."""
        if not self.settings.legacy_sources_enabled:
            return
        from services.legacy_sources import LegacySources

        self.legacy = LegacySources(
            self.store, self.dead_letters, self.settings.data_dir.resolve() / "legacy", self.secret_box,
            mode=self.mode, kafka_bootstrap=self.kafka_bootstrap, topic_prefix=self.topic_prefix,
            connect_url=self.settings.connect_url, group_id=f"{self.topic_prefix}-legacy-ingest",
            jvm_opts=self.settings.jvm_opts, aggregates=self.aggregates,
            allow_private=self.settings.legacy_allow_private,
        )
        self.legacy.start()

    def _start_alerts(self) -> None:
        """This process's part of the alert fleet (services/alerts/fleet.py): worker threads on the
        alerts queue (Redis with ``AGENTFLOW_REDIS_URL``, else dramatiq-postgres) and the scheduler,
        triggered by the applied events that move a rule's metric (``AGENTFLOW_ALERTS=0`` leaves it
        out)."""
        if not self.settings.alerts_enabled:
            return
        from connectors.alert_store import AlertStore
        from connectors.brokers import postgres_broker, redis_broker
        from services.alerts.fleet import AlertFleet

        if self.metric_source is None:
            raise RuntimeError("alerts need Runtime.metric_source (set by services.bootstrap.build)")

        def kick(endpoint_id: str) -> None:  # distributed: no fleet here, the workers' sweep sends it
            if self.webhooks is not None:
                self.webhooks.kick(endpoint_id)

        redis_url = self.settings.redis_url
        broker = redis_broker(redis_url) if redis_url else postgres_broker(self.database_url, maxconn=4)
        self.alerts = AlertFleet(
            AlertStore(self.engine, self.webhook_store), self.metric_source, broker, self.database_url,
            kick=kick, applied=self.wait_applied, position=lambda: self.watermark,
            sweep_s=self.settings.alert_sweep_s, worker_threads=self.settings.alert_worker_threads,
        )  # fmt: skip
        self.applied_listeners.append(self.alerts.on_applied)
        self.alerts.start()

    def _start_heartbeat(self) -> None:
        """This process's worker threads (alerts; embedded: webhooks and lake too) beat into
        ``worker_heartbeats`` for ``/v1/health`` (services/heartbeat.py)."""
        if self.alerts is None and self.webhooks is None:
            return
        from connectors.worker_heartbeats import HeartbeatStore
        from services.heartbeat import Heartbeat, threads_alive

        alerts, hooks = self.alerts, self.webhooks

        def queues() -> list[str]:
            out = list(alerts.broker.get_declared_queues()) if alerts is not None else []
            return out + (list(hooks.broker.get_declared_queues()) if hooks is not None else [])

        def alive() -> int:
            return threads_alive(alerts.worker if alerts else None, hooks.worker if hooks else None)

        self.heartbeat = Heartbeat(HeartbeatStore(self.engine), queues, alive, role="api", mode=self.mode)
        self.heartbeat.start()

    def _start_distributed(self) -> None:
        """No tailers, projectors or lake runner here: Flink projects; the loader applies its output."""
        assert self.kafka_bootstrap
        self.serving_runner = ServingLoader(
            self.clickhouse,
            self.engine,
            self.kafka_bootstrap,
            topic_prefix=self.topic_prefix,
            group_id=self.loader_group,
            checkpoint_name=f"serving-loader:{self.loader_group}",  # one per group (= per API host)
            on_applied=self._on_applied,
        )
        self._spawn(self.serving_runner)

    def _dead_letter(self, event: RecordedEvent, reason: str) -> None:
        """The embedded pipeline's validation stage: an invalid event is stored, not projected."""
        record = {
            "position": event.position, "tenant_id": event.tenant_id, "stream_type": event.stream_type,
            "stream_id": event.stream_id, "stream_version": event.stream_version,
            "event_id": str(event.event_id), "event_type": event.event_type,
            "schema_version": event.schema_version, "data": event.data,
            "occurred_at": event.occurred_at.isoformat(),
        }  # fmt: skip
        letter = DeadLetter(
            "embedded", "validate", reason, event_id=str(event.event_id), position=event.position,
            tenant_id=event.tenant_id, event_type=event.event_type, record=record,
        )  # fmt: skip
        self.dead_letters.add([letter])

    def _spawn(self, runner: _Runnable) -> None:
        thread = threading.Thread(target=runner.run, args=(self._stop,), name=f"projector-{runner.name}")
        thread.daemon = True
        thread.start()
        self._threads.append(_Thread(runner, thread))

    def stop(self) -> None:
        self._stop.set()
        self.engine_health.stop()
        if self.legacy is not None:
            try:
                self.legacy.stop()
            except Exception:  # pragma: no cover - best effort on shutdown
                log.exception("stopping the legacy sources failed")
        if self.heartbeat is not None:
            self.heartbeat.stop()
        if self.alerts is not None:
            try:
                self.alerts.stop()
            except Exception:  # pragma: no cover - best effort on shutdown
                log.exception("stopping the alert fleet failed")
        if self.lake_job is not None:
            self.lake_job.stop()
        if self.webhooks is not None:
            try:
                self.webhooks.stop()
            except Exception:  # pragma: no cover - best effort on shutdown
                log.exception("stopping the worker fleet failed")
        for t in self._threads:
            t.thread.join(timeout=15)
        flush = getattr(getattr(self.lake_runner, "sink", None), "flush", None)
        if callable(flush):
            try:
                flush()
            except Exception:  # pragma: no cover - best effort on shutdown
                log.exception("iceberg flush on shutdown failed")
        self.engine.dispose()

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._position_changed = asyncio.Event()

    # ---- applied events -> cache + waiters -------------------------------------------
    @property
    def watermark(self) -> int:
        """Every position up to this one is reflected in the serving read models."""
        runner = self.serving_runner
        return max(self._watermark, runner.status.watermark if runner else 0)

    def _on_applied(self, events: Sequence[RecordedEvent], watermark: int) -> None:
        if events:
            self.cache.invalidate(events)
        for listener in self.applied_listeners:
            try:
                listener(events, watermark)
            except Exception:
                log.exception("applied-events listener %r failed", listener)
        if watermark > self._watermark:
            self._watermark = watermark
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._wake_waiters)
            with self._applied:
                self._applied.notify_all()

    def wait_applied(self, position: int, timeout_s: float) -> bool:
        """Block until the serving read models reflect ``position`` (worker threads: the alert actor);
        False when ``timeout_s`` passes first."""
        deadline = time.monotonic() + timeout_s
        with self._applied:
            while self.watermark < position:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                # the cap covers watermark moves that do not come through _on_applied (checkpoint load)
                self._applied.wait(min(remaining, 0.25))
        return True

    def _wake_waiters(self) -> None:
        """On the event loop: release everyone waiting on the current event, hand out a fresh one
        (no waiter ever clears an event another waiter still needs)."""
        changed, self._position_changed = self._position_changed, asyncio.Event()
        if changed is not None:
            changed.set()

    async def wait_for_position(self, position: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.watermark < position:
            changed = self._position_changed
            remaining = deadline - time.monotonic()
            if changed is None or remaining <= 0:
                return False
            if self.watermark >= position:  # moved between the check above and taking the event
                break
            # the cap covers watermark moves that do not come through _on_applied (checkpoint load)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout=min(remaining, 0.5))
        return True

    @property
    def lake_watermark(self) -> int | None:
        """The lake's applied position; None when this process runs no lake."""
        lake = self.lake_runner
        return lake.status.watermark if lake is not None else None

    def flush_serving(self) -> None:
        """The serving sink writes the tables metrics don't read (events, order lines, products, users,
        payments) lazily; a reader of those catches them up first (a no-op when nothing is pending)."""
        sink = getattr(self.serving_runner, "sink", None)
        if sink is not None:
            sink.flush()

    def kafka_consumers(self) -> list[ConsumerLag]:
        """This process's Kafka consumers' lag trackers (distributed: serving loader, legacy ingest)."""
        found = [self.serving_runner.kafka_lag] if isinstance(self.serving_runner, ServingLoader) else []
        if self.legacy is not None:
            found.append(self.legacy.kafka_lag)
        return found

    # ---- freshness -----------------------------------------------------------------
    def freshness_seconds(self) -> float:
        """How far the serving read models lag the store: 0 when caught up at the last poll."""
        runner = self.serving_runner
        if runner is None:
            return 0.0
        st = runner.status
        if isinstance(st, LoaderStatus):
            # caught up = every position the store tail has seen is applied; otherwise the read models
            # are complete as of the last turn that was (positions only: no recorded_at to compare)
            if st.caught_up:
                return 0.0
            since = st.caught_up_at or self.started_at
            return round(max(0.0, time.time() - since), 3)
        if st.caught_up and not st.last_error:
            return 0.0
        if st.last_recorded_at is None:
            return round(time.time() - self.started_at, 3)
        return round(max(0.0, time.time() - st.last_recorded_at.timestamp()), 3)

    @staticmethod
    def status_of(runner: ProjectionRunner | ServingLoader) -> dict[str, Any]:
        st = runner.status
        out = {k: getattr(st, k) for k in st.__dataclass_fields__}
        if st.last_recorded_at is not None:
            out["last_recorded_at"] = st.last_recorded_at.isoformat()
        return out

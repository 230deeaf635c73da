"""Alert evaluation in the worker fleet of one serving process: Dramatiq worker threads on the
``alerts`` queue running the ``evaluate_alert`` actor (services/alerts/actors.py), and this process's
scheduler (services/alerts/scheduler.py), one of which leads.

Which processes: the ones that serve the read models. A rule is measured exactly as
``GET /v1/metrics/{name}`` serves it, and the serving read models (chdb) are open in one process per
host, the API process, embedded or distributed; an ``agentflow worker`` process has none to measure
with. So each serving process joins the fleet for the alerts queue with its own worker threads
(``AGENTFLOW_ALERT_WORKER_THREADS``, 2), on Redis when ``AGENTFLOW_REDIS_URL`` is set and otherwise on
dramatiq-postgres in the event-store database. Several serving processes share one queue: each
evaluation runs once, in whichever process takes the message, and the rule's row lock and transition
sequence keep transitions exactly once whoever evaluates (services/alerts/evaluator.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from dramatiq import Worker
from dramatiq.broker import Broker

from connectors.alert_store import AlertStore
from connectors.brokers import close_broker
from domain.events import RecordedEvent
from readmodels.alerts import MetricFn
from services.alerts.actors import QUEUE, AlertActors, AppliedWait
from services.alerts.evaluator import AlertEvaluator, Evaluation
from services.alerts.scheduler import AlertScheduler

log = logging.getLogger("agentflow.alerts")


class AlertFleet:
    def __init__(
        self,
        store: AlertStore,
        compute: MetricFn,
        broker: Broker,
        database_url: str,
        *,
        kick: Callable[[str], None] | None = None,
        applied: AppliedWait | None = None,
        position: Callable[[], int] = lambda: 0,
        sweep_s: float = 5.0,
        wait_s: float = 5.0,
        worker_threads: int = 2,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``applied``/``position``: this process's serving watermark (wait for one / read it);
        ``kick``: enqueue an endpoint's webhook drain after a notification commits."""
        self.broker = broker
        self.worker_threads = worker_threads
        self.evaluator = AlertEvaluator(store, compute, kick=kick, clock=clock)
        self.actors = AlertActors(broker, self.evaluator, applied, wait_s)
        self.scheduler = AlertScheduler(store, self.actors.send, database_url, position, sweep_s, clock)
        self.worker: Worker | None = None
        self._stopped = False

    def start(self) -> None:
        self.worker = Worker(
            self.broker, queues={QUEUE}, worker_threads=self.worker_threads, worker_timeout=100
        )
        self.worker.start()
        self.scheduler.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.scheduler.stop(timeout_s)
        if self.worker is not None:
            self.worker.stop(timeout=int(timeout_s * 1000))
        close_broker(self.broker)

    # -- triggers -------------------------------------------------------------------------------------
    def on_applied(self, events: Sequence[RecordedEvent], watermark: int) -> None:
        self.scheduler.on_applied(events, watermark)

    def request(self, rule_id: str) -> None:
        self.scheduler.request(rule_id)

    def wake(self) -> None:
        self.scheduler.wake()

    def evaluate(self, rule_id: str) -> Evaluation | None:
        """Evaluate now, in the calling thread (no message: the tests drive evaluations this way)."""
        return self.evaluator.evaluate(rule_id)

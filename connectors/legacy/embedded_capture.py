"""Capture a legacy database in-process with Debezium's embedded engine (a JVM inside Python via JPype).

One :class:`EmbeddedCapture` runs one engine for one :class:`SourceSpec` on a background thread and hands
each batch of change records to ``handle_batch``. Delivery is at-least-once:

* the batch's offsets are marked processed and flushed (``offset.flush.interval.ms=0``) only after
  ``handle_batch`` returns; offsets live in ``state_dir/offsets.dat`` (Connect's FileOffsetBackingStore)
  and the MySQL/MariaDB schema history in ``state_dir/schema-history.dat``, so a restart resumes where
  the last committed batch ended (no re-snapshot);
* if ``handle_batch`` raises, nothing of that batch is committed: the engine is failed, the error is
  recorded and the engine restarts after a backoff (1 s, 2 s, ... 30 s), re-delivering the same records.
  Engine failures (database down, bad credentials) are recorded and retried the same way; nothing here
  ever raises into the host process;
* ``stop()`` lets a batch inside ``handle_batch`` finish and commit before closing, so a clean stop and
  restart deliver nothing twice. Exception: Debezium records "snapshot completed" only with the first
  offset committed after it (a change or a heartbeat, <= 10 s), so a stop right after the initial
  snapshot repeats the snapshot on the next start.

The engine runs in the process's one JVM (connectors/legacy/jvm.py), started on the first capture.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from connectors.legacy.debezium_config import (
    connector_config,
    file_schema_history,
    heartbeat_topic,
    slot_name,
)
from connectors.legacy.declaration import SourceSpec
from connectors.legacy.jvm import EmbeddedJvm, java_message

log = logging.getLogger(__name__)

OFFSETS_FILE = "offsets.dat"
SCHEMA_HISTORY_FILE = "schema-history.dat"
BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 30.0


@dataclass(frozen=True)
class CdcMessage:
    """One change record: ``value`` is the Debezium envelope (JSON-decoded), None for a tombstone."""

    topic: str
    key: dict[str, Any] | None
    value: dict[str, Any] | None


class SlotLostError(RuntimeError):
    """A Postgres source has a stored stream position but its replication slot no longer exists."""


# -- one capture --------------------------------------------------------------------------------------
class EmbeddedCapture:
    """Debezium embedded engine for one source, on a daemon thread; restarts itself after failures."""

    def __init__(
        self,
        spec: SourceSpec,
        state_dir: Path,
        handle_batch: Callable[[list[CdcMessage]], None],
        jvm: EmbeddedJvm,
        *,
        topic_prefix: str = "legacy",
        backoff_initial: float = BACKOFF_INITIAL,
        backoff_max: float = BACKOFF_MAX,
    ) -> None:
        """``jvm``: the process's JVM (started by the first capture that runs). ``backoff_initial`` /
        ``backoff_max``: seconds between a failure and the next attempt (doubling from the first to the
        second; tests set them to tell a retry from an interrupted wait)."""
        self.spec = spec
        self.state_dir = Path(state_dir).absolute()
        self.handle_batch = handle_batch
        self.topic_prefix = topic_prefix
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.jvm = jvm
        self.name = f"legacy-{spec.name}"
        self._heartbeat_topic = heartbeat_topic(spec, topic_prefix)
        self._lock = threading.Lock()
        self._batch_done = threading.Condition(self._lock)
        self._in_batch = 0
        self._batch_thread: int | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._engine: Any = None
        self._failure: str | None = None
        self._error: str | None = None
        self._task_running = False
        self._attempt_started = 0.0
        self._started_mono = 0.0
        self.started_at: float | None = None  # wall time of start()
        self.start_seconds: float | None = None  # start() -> first engine task running (JVM start included)
        self.engine_start_seconds: float | None = None  # last engine build -> task running
        self.restarts = 0
        self.batches = 0
        self.records = 0
        self.last_batch_at: float | None = None

    # -- public -------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """The capture loop is alive (capturing, starting, or waiting to retry after a failure)."""
        return self._thread is not None and self._thread.is_alive() and not self._stopping.is_set()

    @property
    def capturing(self) -> bool:
        """The engine's task is up right now (connected to the database)."""
        return self._task_running

    @property
    def error(self) -> str | None:
        """The last failure (handler or engine); cleared when a batch is committed after it."""
        return self._error

    def properties(self) -> dict[str, str]:
        """The full engine config: the shared connector config plus the embedded engine's storage keys."""
        props = connector_config(
            self.spec, topic_prefix=self.topic_prefix,
            schema_history=file_schema_history(str(self.state_dir / SCHEMA_HISTORY_FILE)),
        )
        props.update({
            "name": self.name,
            "offset.storage": "org.apache.kafka.connect.storage.FileOffsetBackingStore",
            "offset.storage.file.filename": str(self.state_dir / OFFSETS_FILE),
            # flush on every markBatchFinished: a committed batch is never re-delivered after a restart
            "offset.flush.interval.ms": "0",
            "offset.flush.timeout.ms": "10000",
            # retriable errors fail the engine instead of retrying silently inside it: our loop records
            # them (``error``) and restarts with backoff
            "errors.max.retries": "0",
        })
        return props

    def start(self) -> None:
        """Start the capture thread (the JVM starts in it on first use); returns at once."""
        if self._thread is not None and self._thread.is_alive():
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._stopping.clear()
        self.started_at = time.time()
        self._started_mono = time.monotonic()
        self.start_seconds = None
        self._thread = threading.Thread(target=self._loop, name=f"debezium-{self.spec.name}", daemon=True)
        self.jvm.attach(self)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Let a batch in ``handle_batch`` finish and commit, close the engine, join the thread.

        Closing interrupts the engine's threads, so an in-flight batch would fail to commit and be
        re-delivered after the next start; waiting for it first keeps a clean stop duplicate-free.
        """
        with self._batch_done:
            self._stopping.set()
            in_handler = self._batch_thread == threading.get_ident()  # stop() called from handle_batch
            if not in_handler and not self._batch_done.wait_for(lambda: self._in_batch == 0, timeout):
                log.warning("debezium engine %s: handle_batch busy for %.0fs; closing", self.name, timeout)
            engine = self._engine
        if engine is not None:
            self._close(engine)
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("debezium engine %s did not stop within %.0fs", self.name, timeout)
        self.jvm.detach(self)

    def wait_capturing(self, timeout: float = 60.0) -> None:
        """Block until the engine's task runs (tests, CLI); raises TimeoutError with the last error."""
        deadline = time.monotonic() + timeout
        while not self._task_running:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} not capturing within {timeout}s (error: {self._error})")
            time.sleep(0.05)

    # -- engine thread ------------------------------------------------------------------------------
    def _loop(self) -> None:
        backoff = self.backoff_initial
        while not self._stopping.is_set():
            self._failure = None
            committed_before = self.batches
            try:
                self._check_resume_point()
                self.jvm.ensure()
                engine = self._build()
                with self._lock:
                    if self._stopping.is_set():
                        self._close(engine)
                        break
                    self._engine = engine
                engine.run()  # blocks until close() or failure
            except Exception as e:  # JVM start, config errors, JPype errors: never out of this thread
                self._failure = self._failure or f"{type(e).__name__}: {e}"
            finally:
                with self._lock:
                    engine, self._engine = self._engine, None
                if engine is not None:
                    self._close(engine)
                self._task_running = False
            if self._stopping.is_set():
                break
            self._error = self._failure or "engine stopped unexpectedly"
            if self.batches > committed_before:
                backoff = self.backoff_initial  # it worked for a while: a fresh failure, not a flapping one
            log.warning("debezium engine %s failed (retrying in %.0fs): %s", self.name, backoff, self._error)
            self.restarts += 1
            if self._stopping.wait(backoff):
                break
            backoff = min(backoff * 2, self.backoff_max)

    def _check_resume_point(self) -> None:
        """Refuse to resume a Postgres stream whose slot is gone.

        Debezium would create a new slot at the current WAL position and stream on from there: every
        change between the stored offset and now would be skipped silently. Failing (recorded, retried)
        leaves the decision to a person: delete the state dir's offsets file to re-snapshot.
        """
        if self.spec.kind != "postgres":
            return
        offsets = self.state_dir / OFFSETS_FILE
        try:
            stored = b'"lsn"' in offsets.read_bytes()
        except FileNotFoundError:
            return
        if not stored:
            return
        c = self.spec.connection
        with psycopg.connect(
            host=c.host, port=c.port, dbname=c.database, user=c.user, password=c.password or None,
            autocommit=True, connect_timeout=10, application_name="agentflow-legacy-check",
        ) as conn:
            found = conn.execute(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s AND database = %s",
                (slot_name(self.spec), c.database),
            ).fetchone()
        if found is None:
            raise SlotLostError(
                f"replication slot {slot_name(self.spec)} is gone but {offsets} holds a stream position: "
                f"changes since then cannot be captured; delete {offsets} to take a new snapshot"
            )

    def _build(self) -> Any:
        import jpype

        props = jpype.JClass("java.util.Properties")()
        for k, v in self.properties().items():
            props.setProperty(k, v)
        engine_cls = jpype.JClass("io.debezium.engine.DebeziumEngine")
        json_format = jpype.JClass("io.debezium.engine.format.Json")
        self._attempt_started = time.monotonic()
        return (
            engine_cls.create(json_format)
            .using(props)
            .using(_completion_callback(self))
            .using(_connector_callback(self))
            .notifying(_change_consumer(self))
            .build()
        )

    @staticmethod
    def _close(engine: Any) -> None:
        try:
            engine.close()
        except Exception as e:  # already shut down after a failure: nothing to do
            log.debug("closing debezium engine: %s", e)

    # -- callbacks (on engine threads) ---------------------------------------------------------------
    def _on_task_started(self) -> None:
        now = time.monotonic()
        self._task_running = True
        self.engine_start_seconds = now - self._attempt_started
        if self.start_seconds is None:
            self.start_seconds = now - self._started_mono
        log.info("debezium engine %s capturing (engine start %.2fs)", self.name, self.engine_start_seconds)

    def _on_completion(self, success: bool, message: str, error: Any) -> None:
        self._task_running = False
        if self._stopping.is_set():
            return
        if error is not None:
            self._failure = self._failure or f"{message} ({java_message(error)})"
        elif not success:
            self._failure = self._failure or str(message)

    def _enter_batch(self) -> bool:
        with self._batch_done:
            if self._stopping.is_set():
                return False
            self._in_batch += 1
            self._batch_thread = threading.get_ident()
            return True

    def _leave_batch(self) -> None:
        with self._batch_done:
            self._in_batch -= 1
            self._batch_thread = None
            self._batch_done.notify_all()

    def _on_batch(self, records: Any, committer: Any) -> None:
        messages: list[CdcMessage] = []
        for r in records:
            topic = str(r.destination())
            if topic == self._heartbeat_topic:
                continue  # committed below with the batch; no consumer wants heartbeats
            key, value = r.key(), r.value()
            messages.append(CdcMessage(
                topic,
                json.loads(str(key)) if key is not None else None,
                json.loads(str(value)) if value is not None else None,
            ))
        if messages:
            self.handle_batch(messages)
        for r in records:
            committer.markProcessed(r)
        committer.markBatchFinished()
        self.batches += 1
        self.records += len(messages)
        self.last_batch_at = time.time()
        self._error = None


# JPype proxies are defined lazily: their interfaces exist only once the JVM runs.
def _change_consumer(capture: EmbeddedCapture) -> Any:
    import jpype

    runtime_exception = jpype.JClass("java.lang.RuntimeException")

    @jpype.JImplements("io.debezium.engine.DebeziumEngine$ChangeConsumer")
    class ChangeConsumer:
        @jpype.JOverride
        def handleBatch(self, records: Any, committer: Any) -> None:
            # Raising a Java exception fails the engine's task with nothing of this batch marked
            # processed, so the next engine re-delivers it. (Returning without marking would let a
            # later batch's commit skip it.)
            if not capture._enter_batch():
                raise runtime_exception("capture is stopping")
            try:
                capture._on_batch(records, committer)
            except Exception as e:
                detail = java_message(e) if isinstance(e, jpype.JException) else f"{type(e).__name__}: {e}"
                if capture._stopping.is_set():
                    log.info("debezium engine %s: batch not committed (stopping): %s", capture.name, detail)
                    raise runtime_exception("capture is stopping") from None
                capture._failure = f"handle_batch failed: {detail}"
                log.error("debezium engine %s: %s", capture.name, capture._failure, exc_info=True)
                raise runtime_exception(capture._failure) from None
            finally:
                capture._leave_batch()

        @jpype.JOverride
        def supportsTombstoneEvents(self) -> bool:
            return True

    return ChangeConsumer()


def _completion_callback(capture: EmbeddedCapture) -> Any:
    import jpype

    @jpype.JImplements("io.debezium.engine.DebeziumEngine$CompletionCallback")
    class CompletionCallback:
        @jpype.JOverride
        def handle(self, success: bool, message: Any, error: Any) -> None:
            capture._on_completion(bool(success), str(message), error)

    return CompletionCallback()


def _connector_callback(capture: EmbeddedCapture) -> Any:
    import jpype

    @jpype.JImplements("io.debezium.engine.DebeziumEngine$ConnectorCallback")
    class ConnectorCallback:
        @jpype.JOverride
        def taskStarted(self) -> None:
            capture._on_task_started()

        @jpype.JOverride
        def taskStopped(self) -> None:
            capture._task_running = False

    return ConnectorCallback()

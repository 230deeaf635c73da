"""A local MariaDB server with the binlog on, for CDC tests and benchmarks (Debezium MariaDB/MySQL).

MariaDB refuses to run as root, so when we are root the server runs as the ``mysql`` OS user that the
Debian package creates. Layout under ``data_dir``::

    data/           the server's datadir (mariadb-install-db on first start), binlogs ``binlog.NNNNNN``
    mysqld.sock     unix socket (a short temporary directory when this path would be too long)
    mariadbd.pid    pid file
    mariadbd.log    error log (start failures quote its tail)

The server listens on 127.0.0.1 only. ``root`` has an empty password and may log in over TCP from
127.0.0.1 (``--auth-root-authentication-method=normal``); only use it on throwaway data dirs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import pymysql
import pymysql.cursors

from connectors.postgres_cluster import _make_traversable, _port_is_free, free_port

log = logging.getLogger(__name__)

SUPERUSER = "root"
SERVER_USER = "mysql"
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes

# What Debezium's MariaDB/MySQL connectors need: SELECT/RELOAD/SHOW DATABASES/LOCK TABLES for the
# snapshot, REPLICATION SLAVE to read the binlog, REPLICATION CLIENT (= BINLOG MONITOR on MariaDB >= 10.5)
# for SHOW MASTER STATUS / SHOW BINARY LOGS, REPLICA MONITOR for SHOW REPLICA STATUS (10.5.9+).
CDC_GRANTS: tuple[str, ...] = (
    "SELECT", "RELOAD", "SHOW DATABASES", "REPLICATION SLAVE", "REPLICATION CLIENT", "LOCK TABLES",
    "BINLOG MONITOR", "REPLICA MONITOR",
)

# Small footprint (2 cores, shared with Postgres, Kafka, ...); durability settings stay at defaults.
DEFAULT_SETTINGS: dict[str, str] = {
    "innodb-buffer-pool-size": "64M",
    "innodb-log-file-size": "32M",
    "max-connections": "200",
    "skip-name-resolve": "1",
    "default-time-zone": "+00:00",
    "character-set-server": "utf8mb4",
    "collation-server": "utf8mb4_general_ci",
    "performance-schema": "0",
}

_STARTUP_PROBLEMS = ("Do you already have another", "Bind on TCP/IP port", "Address already in use")


def find_mariadbd() -> Path:
    """The ``mariadbd`` binary ($AGENTFLOW_MARIADBD, PATH, /usr/sbin); a clear error when missing."""
    env = os.environ.get("AGENTFLOW_MARIADBD")
    candidates: list[str | None] = [
        env, shutil.which("mariadbd"), "/usr/sbin/mariadbd", shutil.which("mysqld"), "/usr/sbin/mysqld",
    ]
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return Path(c)
    raise FileNotFoundError("mariadbd not found: run `make system-deps` (apt-get install mariadb-server)")


def _find_install_db(mariadbd: Path) -> Path:
    candidates: list[str | Path | None] = [
        shutil.which("mariadb-install-db"), shutil.which("mysql_install_db"),
        mariadbd.parent.parent / "bin" / "mariadb-install-db", "/usr/bin/mariadb-install-db",
    ]
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    raise FileNotFoundError("mariadb-install-db not found: run `make system-deps`")


class MariaDBServer:
    """Start/stop a MariaDB server on 127.0.0.1 with a ROW/FULL binlog. ``start()`` is idempotent.

    ``die_with_parent=True`` makes the kernel stop the server when the thread that started it dies
    (use it in tests: a killed pytest leaves no mariadbd behind); leave it off for long-lived servers
    started from short-lived threads.
    """

    def __init__(
        self,
        data_dir: Path | str,
        port: int | None = None,
        settings: dict[str, str] | None = None,
        server_id: int = 1,
        die_with_parent: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.datadir = self.data_dir / "data"
        self.log_file = self.data_dir / "mariadbd.log"
        self.pid_file = self.data_dir / "mariadbd.pid"
        self._requested_port = port
        self.port: int | None = port
        self.settings = {**DEFAULT_SETTINGS, **(settings or {})}
        self.server_id = server_id
        self.die_with_parent = die_with_parent
        self.host = "127.0.0.1"
        self.user = SUPERUSER
        self.password = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._short_socket_dir: Path | None = None
        self._as_root = os.geteuid() == 0
        self._mariadbd: Path | None = None

    # -- public API ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """SQLAlchemy URL of the superuser (no database selected)."""
        if self.port is None:
            raise RuntimeError("server not started")
        return f"mysql+pymysql://{SUPERUSER}@{self.host}:{self.port}/"

    @property
    def socket(self) -> Path:
        default = self.data_dir / "mysqld.sock"
        if len(str(default)) <= _SOCKET_PATH_MAX:
            return default
        if self._short_socket_dir is None:
            self._short_socket_dir = Path(tempfile.mkdtemp(prefix="af-mariadb-"))
        return self._short_socket_dir / "mysqld.sock"

    @property
    def mariadbd(self) -> Path:
        if self._mariadbd is None:
            self._mariadbd = find_mariadbd()
        return self._mariadbd

    def start(self, timeout: float = 60.0) -> str:
        """Initialise the datadir if needed, start (or adopt a running server on it); returns ``url``."""
        deadline = time.monotonic() + timeout
        self._prepare_dirs()
        if not (self.datadir / "mysql").is_dir():
            self._install_db()
        pid = self._running_pid()
        if pid is not None:
            adopted = self._port_of(pid)
            if adopted is not None and self._wait_ready(pid, adopted, deadline):
                self.port = adopted
                return self.url
            raise RuntimeError(f"a mariadbd (pid {pid}) already runs on {self.datadir} but does not answer")
        self.pid_file.unlink(missing_ok=True)
        self._start_server(deadline)
        return self.url

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (a clean InnoDB shutdown), wait, then SIGKILL whatever is left."""
        pid = self._proc.pid if self._proc is not None and self._proc.poll() is None else self._running_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if not self._wait_gone(pid, timeout):
                log.warning("mariadbd (pid %s) ignored SIGTERM for %.0fs; killing it", pid, timeout)
                self._kill_group(pid)
                self._wait_gone(pid, 10)
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)  # setpriv wrapper or stragglers
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=10)
            self._proc = None
        if self._short_socket_dir is not None:
            shutil.rmtree(self._short_socket_dir, ignore_errors=True)
            self._short_socket_dir = None

    def is_running(self) -> bool:
        return self._running_pid() is not None

    def connect(
        self,
        database: str | None = None,
        user: str = SUPERUSER,
        password: str = "",
        autocommit: bool = False,
        connect_timeout: float = 10,
    ) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
        """A pymysql connection over TCP (what Debezium uses too)."""
        if self.port is None:
            raise RuntimeError("server not started")
        return pymysql.connect(
            host=self.host, port=self.port, user=user, password=password, database=database,
            autocommit=autocommit, connect_timeout=int(connect_timeout), charset="utf8mb4",
        )

    def create_database(self, name: str) -> None:
        _check_ident(name)
        with self.connect(autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4")

    def create_user(
        self, user: str, password: str, grants: tuple[str, ...] = CDC_GRANTS, host: str = "%"
    ) -> None:
        """Create (or re-password) ``user``@``host`` and grant ``grants`` ON *.* (CDC rights by default)."""
        _check_ident(user)
        with self.connect(autocommit=True) as conn, conn.cursor() as cur:
            cur.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (user, host, password))
            cur.execute("ALTER USER %s@%s IDENTIFIED BY %s", (user, host, password))
            cur.execute(f"GRANT {', '.join(grants)} ON *.* TO %s@%s", (user, host))

    def variables(self, *names: str) -> dict[str, str]:
        """Global server variables, e.g. ``variables("log_bin", "binlog_format")``."""
        with self.connect(autocommit=True) as conn, conn.cursor() as cur:
            cur.execute("SHOW GLOBAL VARIABLES")
            rows = {str(k): str(v) for k, v in cur.fetchall()}
        return {n: rows[n] for n in names} if names else rows

    def __enter__(self) -> MariaDBServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- internals ------------------------------------------------------------------------------
    def _server_account(self) -> pwd.struct_passwd | None:
        if not self._as_root:
            return None
        try:
            return pwd.getpwnam(SERVER_USER)
        except KeyError as e:
            raise RuntimeError(
                f"no '{SERVER_USER}' OS user (MariaDB refuses root): run `make system-deps`"
            ) from e

    def _prepare_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        account = self._server_account()
        if account is None:
            return
        _make_traversable(self.data_dir)
        sock_dir = self.socket.parent
        for p in (self.data_dir, sock_dir):
            os.chown(p, account.pw_uid, account.pw_gid)
        for p in (self.datadir, self.log_file):
            if p.exists() and p.stat().st_uid != account.pw_uid:
                os.chown(p, account.pw_uid, account.pw_gid)
                if p.is_dir():
                    for root, dirs, files in os.walk(p):
                        for name in (*dirs, *files):
                            os.lchown(os.path.join(root, name), account.pw_uid, account.pw_gid)

    def _user_args(self) -> list[str]:
        return [f"--user={SERVER_USER}"] if self._as_root else []

    def _install_db(self) -> None:
        if self.datadir.exists() and any(self.datadir.iterdir()):
            raise RuntimeError(f"{self.datadir} is not empty but has no mysql/ schema; refusing to init")
        args = [
            str(_find_install_db(self.mariadbd)), "--no-defaults", *self._user_args(),
            f"--datadir={self.datadir}", "--auth-root-authentication-method=normal", "--skip-test-db",
            "--skip-name-resolve", f"--innodb-log-file-size={self.settings['innodb-log-file-size']}",
            f"--innodb-buffer-pool-size={self.settings['innodb-buffer-pool-size']}",
        ]
        res = subprocess.run(args, cwd=str(self.data_dir), capture_output=True, text=True, check=False,
                             env=self._env())
        if res.returncode != 0 or not (self.datadir / "mysql").is_dir():
            out = (res.stdout + res.stderr).strip().splitlines()[-20:]
            raise RuntimeError("mariadb-install-db failed ({}):\n{}".format(res.returncode, "\n".join(out)))

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MYSQL", "MARIADB"))}
        env["TZ"] = "UTC"
        env["LC_ALL"] = "C"
        return env

    def _server_args(self, port: int) -> list[str]:
        args = [
            str(self.mariadbd), "--no-defaults", *self._user_args(), f"--datadir={self.datadir}",
            f"--bind-address={self.host}", f"--port={port}", f"--socket={self.socket}", "--skip-networking=0",
            f"--pid-file={self.pid_file}", f"--log-error={self.log_file}",
            f"--log-bin={self.datadir / 'binlog'}", "--binlog-format=ROW", "--binlog-row-image=FULL",
            f"--server-id={self.server_id}", "--expire-logs-days=1",
        ]
        args += [f"--{k}={v}" for k, v in self.settings.items()]
        if self._as_root and self.die_with_parent and shutil.which("setpriv"):
            # run as mysql from the start so the parent-death signal survives (a setuid would clear it)
            args = ["setpriv", f"--reuid={SERVER_USER}", f"--regid={SERVER_USER}", "--init-groups",
                    "--pdeathsig=TERM", "--", *args]
        elif self.die_with_parent and shutil.which("setpriv"):
            args = ["setpriv", "--pdeathsig=TERM", "--", *args]
        return args

    def _start_server(self, deadline: float) -> None:
        attempt = 0
        while True:
            attempt += 1
            if self._requested_port is not None:
                port = self._requested_port
            else:
                port = self.port if attempt == 1 and self.port is not None and _port_is_free(self.port) \
                    else free_port()
            log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
            with open(os.devnull, "rb") as devnull, open(self.log_file, "ab") as out:
                account = self._server_account()
                if account is not None:
                    os.chown(self.log_file, account.pw_uid, account.pw_gid)
                self._proc = subprocess.Popen(
                    self._server_args(port), cwd=str(self.data_dir), env=self._env(), stdin=devnull,
                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                )
            if self._wait_ready(self._proc.pid, port, deadline, proc=self._proc):
                self.port = port
                return
            tail = self._log_tail(since=log_offset)
            code = self._proc.poll()
            self.stop(timeout=10)
            retryable = code is not None and any(p in tail for p in _STARTUP_PROBLEMS) and \
                self._requested_port is None
            if not retryable or time.monotonic() > deadline or attempt >= 10:
                why = f"exited with {code}" if code is not None else "did not accept connections in time"
                raise RuntimeError(f"mariadbd on port {port} {why}; log {self.log_file}:\n{tail}")
            time.sleep(0.2 * attempt)

    def _wait_ready(
        self, pid: int, port: int, deadline: float, proc: subprocess.Popen[bytes] | None = None
    ) -> bool:
        """Poll a TCP login until it works; False when the process died or the deadline passed."""
        while time.monotonic() < deadline:
            if (proc.poll() is not None) if proc is not None else not _alive(pid):
                return False
            try:
                pymysql.connect(host=self.host, port=port, user=SUPERUSER, connect_timeout=2, read_timeout=2,
                                write_timeout=2).close()
                return True
            except pymysql.err.OperationalError as e:
                log.debug("mariadbd not ready yet: %s", e)
                time.sleep(0.05)
        return False

    def _log_tail(self, n: int = 30, since: int = 0) -> str:
        try:
            with open(self.log_file, "rb") as f:
                f.seek(since)
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-n:])

    def _running_pid(self) -> int | None:
        """The pid of a live mariadbd serving this datadir, from the pid file or our own child."""
        candidates: list[int] = []
        if self._proc is not None and self._proc.poll() is None:
            candidates.append(self._proc.pid)  # setpriv execs mariadbd: same pid
        with contextlib.suppress(OSError, ValueError):
            candidates.append(int(self.pid_file.read_text().strip()))
        for pid in candidates:
            if self._is_our_server(pid):
                return pid
        return None

    def _is_our_server(self, pid: int) -> bool:
        if not _alive(pid):
            return False
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        exe = Path(cmdline[0].decode(errors="replace")).name if cmdline else ""
        return exe in ("mariadbd", "mysqld") and f"--datadir={self.datadir}".encode() in cmdline

    @staticmethod
    def _port_of(pid: int) -> int | None:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        for a in cmdline:
            m = re.fullmatch(rb"--port=(\d+)", a)
            if m:
                return int(m.group(1))
        return None

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.pid == pid:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(timeout=0.05)
            if not _alive(pid):
                return True
            time.sleep(0.05)
        return not _alive(pid)

    @staticmethod
    def _kill_group(pid: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False


def _check_ident(name: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise ValueError(f"not a plain identifier: {name!r}")

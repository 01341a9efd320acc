"""Workers seen from outside: start one detached (`optical worker --detach`, or a per-device
supervisor with `--device all --detach`) and list them with their host, heartbeat age and state
(`optical worker status`)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from engine.errors import ConfigError
from engine.running.launch import WorkerOptions, engine_command
from engine.running.worker import GONE_AFTER_LEASES, log_tail
from engine.statuses import WorkerState, WorkerStatus
from engine.store import Store, open_store, sqlite_path


def detached_paths(db: str, device: str, folder: Path | None = None) -> tuple[Path, Path]:
    """Log and pid file of a detached worker, one pair per database and device (or device list):
    beside an SQLite database; for a database server, in the current folder (`folder`), never in
    the runs dir: that may be shared by many boxes, and a pid means something only on its own
    box."""
    path = sqlite_path(db)
    tag = device.replace(":", "").replace(",", "-")
    if path is not None:
        path = path.resolve()
        return (path.with_name(f"{path.stem}.worker-{tag}.log"),
                path.with_name(f"{path.stem}.worker-{tag}.pid"))
    here = (folder or Path.cwd()).resolve()
    return here / f"optical-worker-{tag}.log", here / f"optical-worker-{tag}.pid"


def read_pid_file(path: Path) -> int | None:
    """The pid a pid file names, or None when it is missing, empty or not a pid (stale garbage)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None
    first = text.split()[0] if text.split() else ""
    if not first.isdigit() or not 1 < int(first) < 2**22:
        return None
    return int(first)


def _is_worker(pid: int) -> bool:
    """Alive and an optical worker (a pid file can outlive its process, and pids are reused)."""
    if not pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc (not Linux): trust the pid
    return b"engine.running.worker" in cmdline or b"engine.running.pool" in cmdline


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_detached(db: str, options: WorkerOptions,
                   module: str = "engine.running.worker") -> tuple[int, Path, Path]:
    """Re-launch the worker (or, with module engine.running.pool, the per-device supervisor) in a
    new session (survives the SSH session); returns pid, log, pid file. `options.device` is the
    device (or, for the pool, the device list)."""
    open_store(db).close()  # a bad --db fails here, in the user's terminal, not in a log file
    path = sqlite_path(db)
    db_arg = str(path.resolve()) if path is not None else db
    log_path, pid_path = detached_paths(db, options.device)
    old = read_pid_file(pid_path) if pid_path.exists() else None
    if old is not None and _is_worker(old):
        raise ConfigError(f"a detached worker for {options.device} on this database is already "
                          f"running (pid {old}, log {log_path}); stop it with `optical worker "
                          "stop` first")
    options = options.replace(pid_file=str(pid_path), log_path=str(log_path))
    cmd, env = engine_command(module, db_arg, *options.argv())
    try:
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL,
                                    start_new_session=True, env=env, cwd=str(log_path.parent))
        # A stale or garbage pid file from a dead worker is simply replaced.
        pid_path.write_text(f"{proc.pid}\n")
    except OSError as exc:
        raise ConfigError(f"could not start a detached worker ({log_path}): {exc}") from None
    time.sleep(1.0)  # catch an immediate failure (bad device, ...) while the user is still here
    if proc.poll() is not None:
        raise ConfigError(f"the detached worker exited at once (status {proc.returncode}):\n"
                          + log_tail(log_path, 5))
    return proc.pid, log_path, pid_path


def worker_rows(store: Store, lease_s: float,
                include_stopped: bool = False) -> list[dict[str, Any]]:
    """Workers with their heartbeat age and state: alive, stale (no heartbeat within the lease,
    or its process is gone on this host), stopping (stop requested), stopped, or gone (silent for
    GONE_AFTER_LEASES leases, whether or not a worker has marked it yet). The live view
    (`include_stopped` False) leaves out the stopped and gone ones."""
    now = store.clock()  # the database's clock: heartbeats were written by it, on any box
    host = socket.gethostname()
    rows = []
    for w in store.list_workers(include_stopped=include_stopped):
        age = now - w.heartbeat_at
        if w.status == WorkerStatus.STOPPED:
            state = WorkerState.STOPPED
        elif w.status == WorkerStatus.GONE or age > GONE_AFTER_LEASES * lease_s:
            state = WorkerState.GONE
            if not include_stopped:
                continue
        elif age > lease_s or (w.host == host and not pid_alive(w.pid)):
            state = WorkerState.STALE
        else:
            state = WorkerState.STOPPING if w.stop_requested else WorkerState.ALIVE
        rows.append({"id": w.id, "host": w.host, "pid": w.pid, "device": w.device,
                     "status": w.status,
                     "experiment_id": w.experiment_id, "heartbeat_age_s": round(age, 1),
                     "state": state,
                     "started_at": w.started_at, "stop_requested": w.stop_requested,
                     "log_path": w.log_path})
    return rows

"""Workers seen from outside: start one detached (`optical worker --detach`) and list them with
their heartbeat age and state (`optical worker status`)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from engine.errors import ConfigError
from engine.store import Store
from engine.worker import REPO, log_tail


def detached_paths(db_path: Path, device: str) -> tuple[Path, Path]:
    """Log and pid file of a detached worker, beside the database: one per database and device."""
    db_path = Path(db_path).resolve()
    tag = device.replace(":", "")
    return (db_path.with_name(f"{db_path.stem}.worker-{tag}.log"),
            db_path.with_name(f"{db_path.stem}.worker-{tag}.pid"))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_detached(db_path: Path, device: str, worker_args: list[str]) -> tuple[int, Path, Path]:
    """Re-launch the worker in a new session (survives the SSH session); returns pid, log, pid file."""
    Store(db_path).close()  # a bad --db fails here, in the user's terminal, not in a log file
    log_path, pid_path = detached_paths(db_path, device)
    if pid_path.exists():
        old = int(pid_path.read_text().split()[0] or 0)
        if old and pid_alive(old):
            raise ConfigError(f"a detached worker for {device} on this database is already running "
                              f"(pid {old}, log {log_path}); stop it with `optical worker stop` first")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "engine.worker", "--db", str(Path(db_path).resolve()), "--device", device,
           "--pid-file", str(pid_path), "--log-path", str(log_path), *worker_args]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env, cwd=str(Path(db_path).resolve().parent))
    pid_path.write_text(f"{proc.pid}\n")
    time.sleep(1.0)  # catch an immediate failure (bad device, ...) while the user is still here
    if proc.poll() is not None:
        raise ConfigError(f"the detached worker exited at once (status {proc.returncode}):\n"
                          + log_tail(log_path, 5))
    return proc.pid, log_path, pid_path


def worker_rows(store: Store, lease_s: float, include_stopped: bool = False) -> list[dict[str, object]]:
    """Workers with their heartbeat age and state: alive, stale (no heartbeat within the lease,
    or its process is gone on this host), stopping (stop requested) or stopped."""
    now = time.time()
    host = socket.gethostname()
    rows = []
    for w in store.list_workers(include_stopped=include_stopped):
        age = now - w.heartbeat_at
        if w.status == "stopped":
            state = "stopped"
        elif age > lease_s or (w.host == host and not pid_alive(w.pid)):
            state = "stale"
        else:
            state = "stopping" if w.stop_requested else "alive"
        rows.append({"id": w.id, "host": w.host, "pid": w.pid, "device": w.device, "status": w.status,
                     "experiment_id": w.experiment_id, "heartbeat_age_s": round(age, 1), "state": state,
                     "started_at": w.started_at, "stop_requested": w.stop_requested, "log_path": w.log_path})
    return rows

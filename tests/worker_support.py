"""Helpers for tests that run real workers: queueing smoke experiments, waiting, finding training
processes, starting workers that are cleaned up whatever happens, reading what a run left behind.

Workers run as `python -m engine.running.worker` subprocesses in their own session (so a test can
stop, continue or kill the whole group); experiments use configs/smoke.toml (a tiny random model).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.config import load_config, with_run
from engine.statuses import EventKind
from engine.store import NewExperiment, Store, open_store

REPO = Path(__file__).resolve().parent.parent
SMOKE = REPO / "configs" / "smoke.toml"
# A longer smoke run (tiny model, CPU) so there is time to act while it trains; checkpoints often.
LONG = ["train.steps=400", "train.checkpoint_every=5", "eval.every=0", "train.log_every=1"]
# One thread per training process: tests run several at once on a small CPU box.
ENV = dict(os.environ, OMP_NUM_THREADS="1")


def queue(db: str | Path, overrides: list[str] | tuple[str, ...] = (),
          seeds: tuple[int, ...] = (0,),
          priority: int = 0) -> list[int]:
    cfg = load_config(SMOKE, list(overrides))
    specs = [NewExperiment("t", "1:1", s, with_run(cfg, "1:1", s).to_dict(), priority=priority)
             for s in seeds]
    with open_store(db) as store:
        return [e.id for e in store.add_experiments(specs)]


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def child_pids(db: str | Path) -> list[int]:
    """Training processes of workers on this database (scanning /proc: no psutil needed)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()[0]
            # A database URL reaches the training process through its environment, never argv.
            env = ((entry / "environ").read_bytes().split(b"\0")
                   if b"engine.running.run_process" in cmd else [])
        except (OSError, IndexError):
            continue
        named = str(db).encode() in cmd or b"OPTICAL_DB=" + str(db).encode() in env
        if b"engine.running.run_process" in cmd and named and state != b"Z":
            found.append(int(entry.name))
    return found


def gone(pid: int) -> bool:
    """Exited (or a zombie waiting for its parent to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state == b"Z"


def series_keys(store: Store, exp_id: int) -> Counter[tuple[str, int]]:
    return Counter((m.key, m.step) for m in store.metrics(exp_id))


def train_steps(store: Store, exp_id: int) -> list[int]:
    return sorted(m.step for m in store.metrics(exp_id, keys=["train/loss"]))


def events_of(store: Store, exp_id: int, kind: str) -> list[str]:
    return [e.message for e in store.events(exp_id) if e.kind == kind]


def files_under(folder: Path, *, logs: bool = True) -> dict[str, tuple[int, int]]:
    """Every file below `folder`: relative path → (size, mtime in ns)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and (logs or p.suffix != ".log"):
            st = p.stat()
            out[str(p.relative_to(folder))] = (st.st_size, st.st_mtime_ns)
    return out


class Workers:
    """Starts worker processes; whatever is still alive at teardown is killed with its group."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[subprocess.Popen[bytes]] = []
        self._logs: list[Any] = []
        self.dbs: set[str] = set()

    def start(self, db: str | Path, *args: str, runs: Path | None = None, cwd: Path = REPO,
              module: str = "engine.running.worker",
              device: str = "cpu") -> subprocess.Popen[bytes]:
        # Always an explicit runs dir: a database URL would otherwise put runs in the checkout.
        runs = runs or self.tmp_path / "runs"
        log = open(self.log_path(len(self.started)), "wb")  # noqa: SIM115 - closed at teardown
        p = subprocess.Popen([sys.executable, "-m", module, "--db", str(db), "--device", device,
                              "--poll", "0.2",
                              "--runs-dir", str(runs), *args], cwd=cwd, stdout=log,
                             stderr=subprocess.STDOUT,
                             start_new_session=True, env=dict(ENV, PYTHONPATH=str(REPO)))
        self.started.append(p)
        self._logs.append(log)
        self.dbs.add(str(db))
        return p

    def log_path(self, i: int) -> Path:
        return self.tmp_path / f"worker-{i}.log"

    def log(self, p: subprocess.Popen[bytes] | None = None) -> str:
        which = range(len(self.started)) if p is None else [self.started.index(p)]
        return "\n".join(f"--- worker {i}\n{self.log_path(i).read_text(errors='replace')}"
                         for i in which)

    def close(self) -> None:
        for p in self.started:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGCONT)  # a paused group cannot die
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        for log in self._logs:
            log.close()
        for db in self.dbs:
            for pid in child_pids(db):
                os.kill(pid, signal.SIGKILL)


def workers_fixture(tmp_path: Path) -> Iterator[Workers]:
    w = Workers(tmp_path)
    try:
        yield w
    finally:
        w.close()


def pause(group_leader: subprocess.Popen[bytes], db: str | Path, ready: Callable[[], object],
          tries: int = 5) -> None:
    """SIGSTOP a worker's process group at a moment `ready` says is safe, and make sure the paused
    processes hold no database lock: an SQLite writer stopped inside its transaction would block
    every other writer. If a probe write does not get through, continue them and try again."""
    for _ in range(tries):
        wait_for(ready, 120, "a moment to pause the worker")
        os.killpg(group_leader.pid, signal.SIGSTOP)
        # The stop takes effect only once one of each process's threads runs to take the signal;
        # on a busy box another thread may write meanwhile. Wait until every thread has stopped.
        wait_for(lambda: group_stopped(group_leader.pid), 30,
                 "every thread of the worker's group to stop")
        probe = threading.Thread(target=_probe_write, args=(str(db),), daemon=True)
        probe.start()
        probe.join(5)
        if not probe.is_alive():
            return
        os.killpg(group_leader.pid, signal.SIGCONT)
        probe.join()
    pytest.fail("could not pause the worker outside a database transaction")


def _state(stat: Path) -> bytes:
    return stat.read_bytes().rsplit(b")", 1)[1].split()[0]


def group_stopped(pgid: int) -> bool:
    """Every thread of every process in process group `pgid` is stopped (state T)."""
    found = False
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if int((entry / "stat").read_bytes().rsplit(b")", 1)[1].split()[2]) != pgid:
                continue
            if _state(entry / "stat") == b"Z":
                continue
            found = True
            if any(_state(task / "stat") not in (b"T", b"t")
                   for task in (entry / "task").iterdir()):
                return False
        except (OSError, IndexError, ValueError):
            continue
    return found


def _probe_write(db: str) -> None:
    with open_store(db) as store:
        store.log_event(None, EventKind.INFO, "test: probe write while a worker is paused")

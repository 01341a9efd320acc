"""The worker: claim → run each experiment in a child process → heartbeat, cancel, recover.

One worker per device. Each claimed experiment runs in `python -m engine.running.run_process`, so an
out-of-memory kill or a segfault ends that run, not the worker. While the child trains, it owns
the experiment row (metrics, heartbeats, its outcome); the worker heartbeats its own row in the
`workers` table, forwards stop requests to the child, and records a failure when the child dies
without reporting one. Every poll it also requeues runs whose heartbeat is older than the lease
(a worker that died with `kill -9`): they resume from their last checkpoint elsewhere.

Stopping. `optical worker stop`, SIGTERM and SIGINT all drain the same way: the child is told
to stop (SIGTERM), checkpoints, hands its run back to the queue and exits; then the worker
exits. The run resumes from that checkpoint on the next worker, so stopping never waits for a
multi-hour run and never loses more than the current step. A second SIGTERM/SIGINT, or a child
that has not stopped after `grace_s`, kills the child; the run resumes from its previous
checkpoint.

Many boxes. Workers on any number of boxes share one queue (a PostgreSQL URL as --db) and, for
resuming elsewhere, one runs dir on a shared filesystem (--runs-dir / OPTICAL_RUNS). Worker ids
(`host:pid:device`) can repeat across containers and Slurm jobs; that is safe because every write
of a run is fenced on its attempt too (engine/store/base.py, engine/run_dirs.py).

Transient errors (a locked or full database, a dropped connection, a log on a full disk) are
reported and retried; they never end the worker.

Notifications (--notify / OPTICAL_NOTIFY, engine/notify.py): a run failed, its sweep finished, the
queue is empty, a run's worker was lost. Each is sent once: by the worker that saw it happen, or
for a sweep and the queue, by the worker whose run ended last.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from engine import notify
from engine.devices import resolve_device
from engine.errors import ConfigError, LeaseLost, OpticalError, StoreError
from engine.metric_keys import PRIMARY_KEYS
from engine.run_dirs import (
    attempt_dir,
    check_runs_root,
    claim_run_dir,
    runs_root,
    runs_root_is_default,
    sweep_finished,
)
from engine.running.launch import (
    DEFAULT_LEASE_S,
    DEFAULT_POLL_S,
    WorkerOptions,
    engine_command,
    pid_file,
)
from engine.running.run_process import EXIT_LEASE_LOST, EXIT_NO_DATA
from engine.statuses import ACTIVE, Status, WorkerStatus
from engine.store import Experiment, RunLease, Store, open_store, resolve_location

LOG_TAIL_LINES = 30
#: A running experiment whose heartbeat is older than this may belong to a dead worker:
#: `--until-empty` waits for its lease to run out (then requeues and runs it) before exiting.
SUSPECT_HEARTBEAT_S = 5.0
#: How often an idle worker deletes the checkpoints of runs that ended without a process to do it
#: (cancelled while queued, failed by the reaper).
SWEEP_EVERY_S = 600.0
#: A worker silent for this many leases is marked gone (any worker's poll does it): it leaves
#: `optical worker status`'s live view, and its row stays for its history.
GONE_AFTER_LEASES = 3
_CGROUP_EVENTS = Path("/sys/fs/cgroup/memory.events")


def oom_kills() -> int | None:
    """The kernel's count of out-of-memory kills in this cgroup (cgroup v2), when readable."""
    try:
        for line in _CGROUP_EVENTS.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        pass
    return None


def describe_exit(returncode: int, oom: bool) -> str:
    if returncode < 0:
        sig = signal.Signals(-returncode)
        if sig == signal.SIGKILL and oom:
            return ("training process was killed by the kernel's out-of-memory killer: lower "
                    "train.batch_size, model.max_length or eval.batch_size")
        return f"training process died from {sig.name} without reporting"
    return f"training process exited with status {returncode} without reporting"


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class QueueWorker:
    def __init__(self, db: str | Path, device: str = "auto", *, lease_s: float = DEFAULT_LEASE_S,
                 poll_s: float = DEFAULT_POLL_S, once: bool = False, max_experiments: int = 0,
                 until_empty: bool = False,
                 grace_s: float = 120.0, log_path: str = "", runs: str | Path | None = None,
                 worker_id: str | None = None, host_name: str | None = None,
                 say: Callable[[str], None] | None = None, notify_to: Sequence[str] = ()) -> None:
        self.db = str(db) if "://" in str(db) else str(Path(db).resolve())
        self.device_setting = device
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.once = once
        self.max_experiments = max_experiments
        self.until_empty = until_empty  # batch jobs: exit once nothing is queued or waiting
        self.grace_s = grace_s
        self.log_path = log_path
        self.runs = runs_root(self.db, runs)
        self.runs_is_default = runs_root_is_default(self.db, runs)
        self.say = say or _say
        # Bad targets fail here, before anything is registered; OPTICAL_NOTIFY adds to them.
        self.notifier = notify.Notifier(notify.targets_from(notify_to), self.say)
        self.device = ""
        self.host = host_name or socket.gethostname()
        self.id = worker_id or ""
        self._quiet_since: float | None = None  # --until-empty: when the queue was first seen empty
        self._last_sweep = -SWEEP_EVERY_S
        self.completed = 0
        self._terminate = False  # SIGTERM/SIGINT received
        self._kill_child = False  # a second signal: do not wait for the checkpoint
        self._proc: subprocess.Popen[bytes] | None = None
        self._lacking: set[int] = set()  # runs handed back because this box lacks their data

    @classmethod
    def from_options(cls, db: str | Path, options: WorkerOptions,
                     say: Callable[[str], None] | None = None,
                     notify_to: Sequence[str] = ()) -> QueueWorker:
        o = options
        return cls(db, o.device, lease_s=o.lease_s, poll_s=o.poll_s, once=o.once,
                   max_experiments=o.max_experiments, until_empty=o.until_empty,
                   log_path=o.log_path,
                   runs=o.runs_dir, worker_id=o.worker_id, host_name=o.host_name, say=say,
                   notify_to=notify_to)

    # ------------------------------------------------------------------ main loop

    def run(self) -> int:
        """Serve the queue until stopped (or --once / --max-experiments). Returns runs handled."""
        check_runs_root(self.runs)  # bad input fails here, before anything is registered
        store = open_store(self.db)  # fails fast on a bad --db before anything is registered
        self.device = resolve_device(self.device_setting)
        self.id = self.id or f"{self.host}:{os.getpid()}:{self.device}"
        store.register_worker(self.id, self.host, os.getpid(), self.device, self.log_path)
        previous = self._install_signal_handlers()
        self.say(f"worker {self.id} serving {store.location} (lease {self.lease_s:g}s, runs in "
                 f"{self.runs})")
        if self.runs_is_default:
            self.say(f"runs dir {self.runs} is the default for a database server: a run resumes on "
                     "another box "
                     "only if that box sees this folder; share one with --runs-dir or OPTICAL_RUNS")
        try:
            while not self._should_exit(store, None, WorkerStatus.IDLE):
                self._sweep(store)
                try:
                    exp = self._next(store)
                except StoreError as exc:
                    # A transient database error (locked, disk full, connection lost) must not end a
                    # worker that may have hours of queue ahead: report, wait, try again.
                    self.say(f"database error, retrying in {self.poll_s:g}s: {exc}")
                    self._sleep(self.poll_s)
                    continue
                if exp is None:
                    if self.once or (self.until_empty and not self._waiting_for_lost_runs(store)):
                        self.say("queue empty")
                        break
                    self._sleep(self.poll_s)
                    continue
                self._quiet_since = None
                self._run_one(store, exp)
                self.completed += 1
                if self.once or (self.max_experiments and self.completed >= self.max_experiments):
                    break
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            try:
                store.unregister_worker(self.id)
            except StoreError as exc:
                self.say(f"could not mark the worker stopped: {exc}")
            store.close()
            self.notifier.close()
            self.say(f"worker {self.id} stopped after {self.completed} experiment(s)")
        return self.completed

    def _next(self, store: Store) -> Experiment | None:
        for exp_id in store.requeue_stale(self.lease_s):
            self.say(f"#{exp_id}: heartbeat older than {self.lease_s:g}s, requeued (or failed)")
            if self.notifier:
                try:
                    self.notifier.send(notify.worker_lost(store.get(exp_id), self.lease_s))
                except OpticalError:
                    pass  # removed meanwhile
        for worker_id in store.reap_workers(GONE_AFTER_LEASES * self.lease_s):
            self.say(f"worker {worker_id}: no heartbeat for {GONE_AFTER_LEASES} leases, "
                     "marked gone")
        return store.claim_next(self.id, self.device, skip=self._lacking)

    def _waiting_for_lost_runs(self, store: Store) -> bool:
        """True while a running experiment may belong to a dead worker: a batch job must wait for
        its lease to expire, requeue it and run it, or that run is orphaned. A run counts as alive
        only once its heartbeat has been seen fresh for SUSPECT_HEARTBEAT_S after the queue went
        empty: a worker killed a second ago still has a fresh heartbeat."""
        try:
            ages = store.heartbeat_ages()
        except StoreError as exc:
            self.say(f"queue empty, but the database did not answer (will retry): {exc}")
            return True
        if not ages:
            return False
        quiet = {i: age for i, age in ages.items() if age > SUSPECT_HEARTBEAT_S}
        if quiet:
            ids = ", ".join(f"#{i} ({age:.0f}s)" for i, age in sorted(quiet.items()))
            self.say(f"queue empty, but waiting for silent run(s) {ids} to reach the "
                     f"{self.lease_s:g}s lease")
            return True
        now = time.monotonic()
        if self._quiet_since is None:
            self._quiet_since = now
            self.say(f"queue empty; watching {len(ages)} running experiment(s) for "
                     f"{SUSPECT_HEARTBEAT_S:g}s "
                     "in case their worker just died")
        return now - self._quiet_since <= SUSPECT_HEARTBEAT_S

    def _sweep(self, store: Store) -> None:
        """Delete checkpoints of runs that ended without a process to do it (cancelled while queued,
        failed by the reaper): at start, then every SWEEP_EVERY_S (a run's own process cleans up
        after itself; a sweep stats every run folder, ~0.1 s per 2000 on a local disk)."""
        if time.monotonic() - self._last_sweep < SWEEP_EVERY_S:
            return
        self._last_sweep = time.monotonic()
        try:
            cleaned = sweep_finished(store, self.runs)
        except (StoreError, OSError) as exc:
            self.say(f"could not clean up finished runs' checkpoints (will retry): {exc}")
            return
        if cleaned:
            self.say("deleted the checkpoints of finished run(s) "
                     + ", ".join(f"#{i}" for i in cleaned))

    def _should_exit(self, store: Store, exp_id: int | None, status: WorkerStatus) -> bool:
        try:
            stop_flag = store.worker_heartbeat(self.id, exp_id, status)
        except StoreError as exc:
            self.say(f"worker heartbeat failed (will retry): {exc}")
            stop_flag = False
        return self._terminate or stop_flag

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._terminate and time.monotonic() < deadline:
            time.sleep(min(0.1, seconds))

    # ------------------------------------------------------------------ one experiment

    def _run_one(self, store: Store, exp: Experiment) -> None:
        lease = exp.lease
        assert lease is not None, "claim_next returns a running experiment"
        started = time.monotonic()
        try:
            folder = claim_run_dir(self.runs, exp)
        except ConfigError as exc:  # another database's run owns the folder: never mix them
            self._record(store, lease, Status.FAILED, str(exc))
            return
        # a shared filesystem that is not there (yet): retry within its attempts
        except OSError as exc:
            self._release(store, lease, f"could not create its run folder under {self.runs}: {exc}",
                          count_attempt=True)
            return
        try:
            own = attempt_dir(folder, lease.attempt)
            own.mkdir(parents=True, exist_ok=True)
            child_log = own / "child.log"
            self.say(f"#{exp.id} {exp.name} ratio {exp.ratio} seed {exp.seed}: attempt "
                     f"{exp.attempts}, "
                     f"log {child_log}")
            cmd, env = engine_command(
                "engine.running.run_process", self.db, "--experiment", str(exp.id),
                "--worker-id", self.id, "--attempt", str(lease.attempt), "--device", self.device,
                "--parent-pid", str(os.getpid()), "--runs-dir", str(self.runs),
                "--lease", f"{self.lease_s:g}")
            with open(child_log, "ab") as log:
                log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} worker {self.id} attempt "
                          f"{exp.attempts}\n"
                          .encode())
                log.flush()
                oom_before = oom_kills()
                self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                              stdin=subprocess.DEVNULL,
                                              env=env)
        # could not create the attempt folder or start the child: keep serving
        except OSError as exc:
            self._release(store, lease, f"could not start the training process: {exc}",
                          count_attempt=True)
            return
        signalled_at: float | None = None
        try:
            while True:
                try:
                    returncode = self._proc.wait(timeout=min(self.poll_s, 1.0))
                    break
                except subprocess.TimeoutExpired:
                    pass
                if self._should_exit(store, exp.id, WorkerStatus.RUNNING) and signalled_at is None:
                    self.say(f"#{exp.id}: stopping: asking the run to checkpoint and hand itself "
                             "back")
                    self._proc.send_signal(signal.SIGTERM)
                    signalled_at = time.monotonic()
                if self._kill_child or (signalled_at is not None
                                        and time.monotonic() - signalled_at > self.grace_s):
                    self._proc.kill()
        finally:
            self._proc = None
        oom_after = oom_kills()
        oom = oom_before is not None and oom_after is not None and oom_after > oom_before
        self._settle(store, lease, returncode, signalled_at is not None or self._terminate, oom,
                     child_log)
        try:
            row = store.get(exp.id)
        # removed meanwhile (`queue rm` right after it finished), or unreachable
        except OpticalError as exc:
            self.say(f"#{exp.id}: finished after {time.monotonic() - started:.1f}s ({exc})")
            return
        self.say(f"#{exp.id}: {row.status} after {time.monotonic() - started:.1f}s "
                 f"(step {row.step}/{row.total_steps})"
                 + (f": {row.error.splitlines()[0]}" if row.error else ""))
        if self.notifier:
            self._announce(store, row)

    def _announce(self, store: Store, row: Experiment) -> None:
        """Notices for a run that just ended: it failed; it was its sweep's last; the queue is
        empty."""
        if row.status == Status.FAILED:
            self.notifier.send(notify.run_failed(row))
        if row.status in ACTIVE:
            return  # handed back to the queue: nothing ended
        try:
            everything = store.list_experiments()
            sweep = [e for e in everything if e.name == row.name]
            if notify.finished_sweep(row, sweep):
                latest = {k: store.latest_metric(k) for k in reversed(PRIMARY_KEYS)}  # full/ wins
                headline = {i: v for values in latest.values() for i, v in values.items()}
                self.notifier.send(notify.sweep_finished(row.name, sweep, headline))
            if notify.finished_sweep(row, everything):
                self.notifier.send(notify.queue_empty(self.id, self.completed + 1))
        except StoreError as exc:
            self.say(f"#{row.id}: could not read its sweep for notifications: {exc}")

    def _settle(self, store: Store, lease: RunLease, returncode: int, asked_to_stop: bool,
                oom: bool,
                child_log: Path) -> None:
        """Record an outcome for a child that exited without recording one itself."""
        if returncode == EXIT_LEASE_LOST:
            return  # another worker requeued it (we were too slow to heartbeat): not ours to touch
        if returncode == EXIT_NO_DATA:  # handed back, attempt kept: leave it to a box with the data
            self._lacking.add(lease.experiment_id)
            self.say(f"#{lease.experiment_id}: this box lacks its data (see {child_log}); "
                     "handed back for another box, and this worker will not claim it again")
            return
        try:
            row = store.get(lease.experiment_id)
        except OpticalError:
            return  # removed right after the child finished it, or the database is unreachable
        if row.lease != lease:
            return  # the child recorded done / failed / cancelled / released
        if asked_to_stop:
            self._release(store, lease, "worker stopped before the run could checkpoint; "
                                        "resumes from its previous checkpoint")
        elif returncode < 0 and not oom:
            # Killed from outside (kill -9, a scheduler's preemption) but not for memory: its
            # checkpoint can resume it, so it goes back to the queue, within its attempts.
            self._release(store, lease, describe_exit(returncode, oom), count_attempt=True)
        else:
            tail = log_tail(child_log)
            self._record(store, lease, Status.FAILED, describe_exit(returncode, oom)
                         + (f"\n\nlast lines of {child_log}:\n{tail}" if tail else ""))

    def _record(self, store: Store, lease: RunLease, status: Status, error: str) -> None:
        try:
            store.finish(lease, status, error=error)
        except LeaseLost:
            pass
        except StoreError as exc:  # its lease will expire and another worker will retry it
            self.say(f"#{lease.experiment_id}: could not record {status}: {exc}")

    def _release(self, store: Store, lease: RunLease, reason: str,
                 count_attempt: bool = False) -> None:
        try:
            store.release(lease, reason, count_attempt=count_attempt)
        except LeaseLost:
            pass
        except StoreError as exc:
            self.say(f"#{lease.experiment_id}: could not requeue: {exc}")

    # ------------------------------------------------------------------ signals

    def _install_signal_handlers(self) -> dict[int, Any]:
        import threading

        if threading.current_thread() is not threading.main_thread():
            return {}
        previous: dict[int, Any] = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, self._on_signal)
        return previous

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._terminate:
            self._kill_child = True  # second signal: stop waiting for the checkpoint
        self._terminate = True
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)


def _say(message: str) -> None:
    try:
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}", flush=True)
    except (OSError, ValueError):
        pass  # a log on a full disk (or a closed terminal) must not end the worker


def main(argv: list[str] | None = None) -> int:
    """Headless entry point (`python -m engine.running.worker`), used by `optical worker --detach`,
    the per-device supervisor, Slurm tasks and `optical demo`."""
    p = argparse.ArgumentParser(prog="python -m engine.running.worker", description=__doc__)
    p.add_argument("--db", default=None, help="database path or URL (default: env OPTICAL_DB, else "
                   "experiments.db); launchers pass it through OPTICAL_DB, never here")
    WorkerOptions.add_arguments(p)
    p.add_argument("--notify", action="append", default=[],
                   help=f"apprise URL or config file to notify (repeatable; also env {notify.ENV})")
    args = p.parse_args(argv)
    options = WorkerOptions.from_args(args)
    try:
        with pid_file(options.pid_file):
            QueueWorker.from_options(resolve_location(args.db), options,
                                     notify_to=args.notify).run()
        return 0
    except OpticalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

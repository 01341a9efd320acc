"""The worker: claim → run each experiment in a child process → heartbeat, cancel, recover.

One worker per device. Each claimed experiment runs in `python -m engine.child`, so an
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
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from engine.child import EXIT_LEASE_LOST, run_dir_for
from engine.devices import resolve_device
from engine.errors import OpticalError
from engine.store import Experiment, LeaseLost, Store

REPO = Path(__file__).resolve().parent.parent
LOG_TAIL_LINES = 30


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        sig = signal.Signals(-returncode)
        if sig == signal.SIGKILL:
            return ("training process was killed by SIGKILL without reporting; most often the kernel's "
                    "out-of-memory killer (check `dmesg`): lower train.batch_size, model.max_length or "
                    "eval.batch_size")
        return f"training process died from {sig.name} without reporting"
    return f"training process exited with status {returncode} without reporting"


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class Worker:
    def __init__(self, db_path: str | Path, device: str = "auto", *, lease_s: float = 60.0,
                 poll_s: float = 2.0, once: bool = False, max_experiments: int = 0, until_empty: bool = False,
                 grace_s: float = 120.0, log_path: str = "",
                 say: Callable[[str], None] | None = None) -> None:
        self.db_path = Path(db_path).resolve()
        self.device_setting = device
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.once = once
        self.max_experiments = max_experiments
        self.until_empty = until_empty  # batch jobs: exit once nothing is queued
        self.grace_s = grace_s
        self.log_path = log_path
        self.say = say or _say
        self.device = ""
        self.id = ""
        self.completed = 0
        self._terminate = False  # SIGTERM/SIGINT received
        self._kill_child = False  # a second signal: do not wait for the checkpoint
        self._proc: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------------ main loop

    def run(self) -> int:
        """Serve the queue until stopped (or --once / --max-experiments). Returns runs handled."""
        store = Store(self.db_path)  # fails fast on a bad --db before anything is registered
        self.device = resolve_device(self.device_setting)
        self.id = f"{socket.gethostname()}:{os.getpid()}:{self.device}"
        store.register_worker(self.id, socket.gethostname(), os.getpid(), self.device, self.log_path)
        previous = self._install_signal_handlers()
        self.say(f"worker {self.id} serving {self.db_path} (lease {self.lease_s:g}s)")
        try:
            while not self._should_exit(store, None, "idle"):
                for exp_id in store.requeue_stale(self.lease_s):
                    self.say(f"#{exp_id}: heartbeat older than {self.lease_s:g}s, requeued (or failed)")
                exp = store.claim_next(self.id, self.device)
                if exp is None:
                    if self.once or self.until_empty:
                        self.say("queue empty")
                        break
                    self._sleep(self.poll_s)
                    continue
                try:
                    self._run_one(store, exp)
                except OSError as exc:  # could not start the child: record it, keep serving
                    store.finish(exp.id, self.id, "failed", error=f"could not start the training process: {exc}")
                self.completed += 1
                if self.once or (self.max_experiments and self.completed >= self.max_experiments):
                    break
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            store.unregister_worker(self.id)
            store.close()
            self.say(f"worker {self.id} stopped after {self.completed} experiment(s)")
        return self.completed

    def _should_exit(self, store: Store, exp_id: int | None, status: str) -> bool:
        stop_flag = store.worker_heartbeat(self.id, exp_id, status)
        return self._terminate or stop_flag

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._terminate and time.monotonic() < deadline:
            time.sleep(min(0.1, seconds))

    # ------------------------------------------------------------------ one experiment

    def _run_one(self, store: Store, exp: Experiment) -> None:
        run_dir = run_dir_for(self.db_path, exp.id)
        run_dir.mkdir(parents=True, exist_ok=True)
        child_log = run_dir / "child.log"
        self.say(f"#{exp.id} {exp.name} ratio {exp.ratio} seed {exp.seed}: attempt {exp.attempts}, "
                 f"log {child_log}")
        started = time.monotonic()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        cmd = [sys.executable, "-m", "engine.child", "--db", str(self.db_path), "--experiment", str(exp.id),
               "--worker-id", self.id, "--device", self.device, "--parent-pid", str(os.getpid())]
        with open(child_log, "ab") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} worker {self.id} attempt {exp.attempts}\n"
                      .encode())
            log.flush()
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          env=env)
        signalled_at: float | None = None
        try:
            while True:
                try:
                    returncode = self._proc.wait(timeout=min(self.poll_s, 1.0))
                    break
                except subprocess.TimeoutExpired:
                    pass
                if self._should_exit(store, exp.id, "running") and signalled_at is None:
                    self.say(f"#{exp.id}: stopping: asking the run to checkpoint and hand itself back")
                    self._proc.send_signal(signal.SIGTERM)
                    signalled_at = time.monotonic()
                if self._kill_child or (signalled_at is not None and time.monotonic() - signalled_at > self.grace_s):
                    self._proc.kill()
        finally:
            self._proc = None
        self._settle(store, exp, returncode, signalled_at is not None or self._terminate, child_log)
        row = store.get(exp.id)
        self.say(f"#{exp.id}: {row.status} after {time.monotonic() - started:.1f}s "
                 f"(step {row.step}/{row.total_steps})" + (f": {row.error.splitlines()[0]}" if row.error else ""))

    def _settle(self, store: Store, exp: Experiment, returncode: int, asked_to_stop: bool, child_log: Path) -> None:
        """Record an outcome for a child that exited without recording one itself."""
        if returncode == EXIT_LEASE_LOST:
            return  # another worker requeued it (we were too slow to heartbeat): not ours to touch
        row = store.get(exp.id)
        if row.status != "running" or row.worker_id != self.id:
            return  # the child recorded done / failed / cancelled / released
        try:
            if asked_to_stop:
                store.release(exp.id, self.id, "worker stopped before the run could checkpoint; "
                                               "resumes from its previous checkpoint")
            else:
                tail = log_tail(child_log)
                store.finish(exp.id, self.id, "failed",
                             error=describe_exit(returncode) + (f"\n\nlast lines of {child_log}:\n{tail}" if tail else ""))
        except LeaseLost:
            pass

    # ------------------------------------------------------------------ signals

    def _install_signal_handlers(self) -> dict[int, object]:
        import threading

        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, self._on_signal)
        return previous

    def _on_signal(self, signum: int, frame: object) -> None:
        if self._terminate:
            self._kill_child = True  # second signal: stop waiting for the checkpoint
        self._terminate = True
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)


def _say(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Headless entry point (`python -m engine.worker`), used by `optical worker --detach`."""
    p = argparse.ArgumentParser(prog="python -m engine.worker", description=__doc__)
    p.add_argument("--db", required=True, type=Path)
    p.add_argument("--device", default="auto")
    p.add_argument("--once", action="store_true")
    p.add_argument("--max-experiments", type=int, default=0)
    p.add_argument("--until-empty", action="store_true")
    p.add_argument("--lease", type=float, default=60.0)
    p.add_argument("--poll", type=float, default=2.0)
    p.add_argument("--pid-file", type=Path, default=None)
    p.add_argument("--log-path", default="")
    args = p.parse_args(argv)
    try:
        if args.pid_file:
            args.pid_file.write_text(f"{os.getpid()}\n")
        Worker(args.db, args.device, lease_s=args.lease, poll_s=args.poll, once=args.once,
               max_experiments=args.max_experiments,
               until_empty=args.until_empty, log_path=args.log_path).run()
        return 0
    except OpticalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.pid_file and args.pid_file.exists() and args.pid_file.read_text().strip() == str(os.getpid()):
            args.pid_file.unlink()


if __name__ == "__main__":
    sys.exit(main())

"""One experiment in its own process: `python -m engine.running.run_process --db DB --experiment ID
...`.

The worker starts one child per claimed experiment, so an out-of-memory kill or a segfault ends
one run, never the worker. The child freezes provenance into the row, trains through a
`StoreReporter`, and records its own outcome: done, cancelled, released (stopped to drain,
resumes from its checkpoint) or failed with the traceback. Exit status 0 means "outcome
recorded"; `EXIT_LEASE_LOST` means the run was taken away and nothing was written.

Files: the attempt writes only in `<runs root>/<id>/attempt-<n>/` and resumes from the newest
usable checkpoint of attempts ≤ n (engine/run_dirs.py, engine/checkpoint.py). A run that ends
(done, failed, cancelled) deletes its checkpoints: it never resumes.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from engine.config import Config, config_from_dict
from engine.errors import DataMissing, LeaseLost, OpticalError
from engine.run_dirs import attempt_dir, remove_checkpoints, run_dir, runs_root
from engine.running.launch import DEFAULT_LEASE_S
from engine.running.store_reporter import StoreReporter
from engine.statuses import EventKind, RunOutcome, Status
from engine.store import Experiment, open_store, resolve_location

EXIT_LEASE_LOST = 3
#: The run was handed back because this box lacks its data: its worker claims it no more.
EXIT_NO_DATA = 4
PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGKILL us when the worker dies, so no orphan keeps heartbeating."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the heartbeat thread's getppid() check still catches it within a second
    if os.getppid() != parent_pid:  # the worker died before prctl took effect
        os._exit(1)


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} CPUs)"


def provenance(cfg: Config, device: str, exp: Experiment, run_dir: Path,
               attempt_dir: Path) -> dict[str, Any]:
    import torch

    from engine.running.provenance import code_version, host_info, library_versions

    return {
        "config": cfg.to_dict(),
        "code_version": code_version(),
        "seed": cfg.train.seed,
        "libraries": library_versions(),
        "device": device,
        "device_name": device_name(device),
        "cuda": torch.version.cuda or "",
        "torch_threads": torch.get_num_threads(),
        "attempt": exp.attempts,
        "run_dir": str(run_dir),
        "attempt_dir": str(attempt_dir),
        "started_at": time.time(),
        **host_info(),
    }


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    return "out of memory" in str(exc).lower() or type(exc).__name__ == "OutOfMemoryError"


def lacks_data(exc: BaseException) -> bool:
    """A data file missing on this box, as opposed to a malformed one: another box (another data
    folder) may have it. The loaders raise DataMissing for both; a missing file's comes from a
    FileNotFoundError, or says so ("... not found: PATH")."""
    if not isinstance(exc, DataMissing):
        return False
    return isinstance(exc.__context__, FileNotFoundError) or " not found: " in str(exc)


def explain_failure(exc: BaseException, cfg: Config | None, device: str) -> str:
    """The first line of the stored error: what went wrong and, where we know, what to change."""
    if is_out_of_memory(exc) and cfg is not None:
        where = "CUDA" if device.startswith("cuda") else "host"
        half = max(1, cfg.train.batch_size // 2)
        return (
            f"{where} out of memory on {device}. Lower train.batch_size (now "
            f"{cfg.train.batch_size}), "
            f"model.max_length (now {cfg.model.max_length}) or eval.batch_size (now "
            f"{cfg.eval.batch_size}); "
            f"e.g. queue it again with --set train.batch_size={half} "
            f"--set train.grad_accum={cfg.train.grad_accum * 2} to keep the effective batch."
        )
    if isinstance(exc, OpticalError):
        return f"{type(exc).__name__}: {exc}"
    return f"training crashed: {type(exc).__name__}: {exc}"


def run(db: str, exp_id: int, worker_id: str, attempt: int, device: str, parent_pid: int | None, *,
        runs: Path | None = None, lease_s: float = DEFAULT_LEASE_S) -> int:
    from engine.checkpoint import Checkpoints  # imports torch: after the heartbeats have started

    stop = threading.Event()
    _install_stop_handlers(stop)  # first: a drain request during start-up must not kill us
    store = open_store(db)
    exp = store.get(exp_id)
    lease = exp.lease
    if lease is None or lease.worker_id != worker_id or lease.attempt != attempt:
        return EXIT_LEASE_LOST
    folder = run_dir(runs or runs_root(db), exp_id)
    own = attempt_dir(folder, attempt)
    own.mkdir(parents=True, exist_ok=True)
    # Heartbeats start now, before the slow imports, so a short lease never expires during
    # start-up. The reporter has its own connection: one per thread, never shared.
    with StoreReporter(open_store(db), lease, stop, lease_s=lease_s,
                       parent_pid=parent_pid) as reporter:
        cfg: Config | None = None
        try:
            if exp.cancel_requested:  # cancelled while its previous worker was lost
                reporter.finish(Status.CANCELLED)
                remove_checkpoints(folder)
                return 0
            cfg = config_from_dict(exp.config)
            if device:
                cfg = cfg.replace(train={"device": device})
            reporter.set_provenance(provenance(cfg, device, exp, folder, own))
            checkpoints = Checkpoints.for_attempt(folder, attempt, guard=reporter.renew)
            for leftover in checkpoints.remove_temp_files():
                print(f"removed {leftover} (an interrupted checkpoint write)", flush=True)
            if exp.step > 0 and not checkpoints.candidates():
                reporter.event(EventKind.WARNING,
                               f"no checkpoint found under {folder} although an earlier attempt "
                               f"reached step {exp.step} (not written yet, or the runs dir is not "
                               "shared between boxes); training restarts from step 0")
            from engine.train import run_training

            print(f"experiment {exp_id} attempt {attempt} on {device}, run dir {own}", flush=True)
            outcome = run_training(cfg, own, reporter, checkpoints)
            if outcome == RunOutcome.DONE:
                reporter.finish(Status.DONE)
                # A finished run never resumes; its checkpoints (optimizer state included:
                # ~255 MB for a CPU demo run, GBs on a GPU run) would only fill the disk.
                remove_checkpoints(folder)
            elif reporter.cancelled():
                reporter.finish(Status.CANCELLED)
                remove_checkpoints(folder)
            else:
                reporter.release(f"worker stopping: checkpointed at step {reporter.last_step}, "
                                 "resumes from there")
            print(f"experiment {exp_id}: {outcome}", flush=True)
            return 0
        except LeaseLost as exc:
            print(f"experiment {exp_id}: {exc}; leaving it to its new owner", flush=True)
            return EXIT_LEASE_LOST
        except BaseException as exc:  # noqa: BLE001 - every failure is recorded on the row
            tb = traceback.format_exc()
            print(tb, file=sys.stderr, flush=True)
            if lacks_data(exc):  # not the run's fault: another box may have the data
                reason = (f"box {socket.gethostname()} lacks the data ({exc}); handed back for a "
                          "box that has it, no attempt used")
                print(reason, flush=True)
                try:
                    reporter.release(reason)
                except LeaseLost:
                    return EXIT_LEASE_LOST
                return EXIT_NO_DATA
            try:
                reporter.record_failure(explain_failure(exc, cfg, device), tb)
            except LeaseLost:
                return EXIT_LEASE_LOST
            # a failed run is retried as a fresh experiment, never resumed
            remove_checkpoints(folder)
            return 0


def _install_stop_handlers(stop: threading.Event) -> None:
    # SIGTERM: the worker is draining or was told to exit. SIGINT: Ctrl-C in the worker's
    # terminal reaches the whole process group; both mean "checkpoint and return".
    def handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.running.run_process", description=__doc__)
    p.add_argument("--db", default=None,
                   help="database path or URL (default: env OPTICAL_DB, which the worker sets)")
    p.add_argument("--experiment", required=True, type=int)
    p.add_argument("--worker-id", required=True)
    p.add_argument("--attempt", required=True, type=int,
                   help="the attempt this process was started for")
    p.add_argument("--device", default="")
    p.add_argument("--parent-pid", type=int, default=None)
    p.add_argument("--runs-dir", type=Path, default=None)
    p.add_argument("--lease", type=float, default=DEFAULT_LEASE_S)
    args = p.parse_args(argv)
    if args.parent_pid is not None:
        die_with_parent(args.parent_pid)
    return run(resolve_location(args.db), args.experiment, args.worker_id, args.attempt,
               args.device, args.parent_pid,
               runs=args.runs_dir, lease_s=args.lease)


if __name__ == "__main__":
    sys.exit(main())

"""Workers on a Slurm cluster: `optical launch slurm --gpus N` submits one job array via submitit.

Each array task gets one GPU and runs `python -m engine.running.worker --until-empty --device
cuda:0` (Slurm sets CUDA_VISIBLE_DEVICES per task, so inside it its GPU is always cuda:0). Tasks
claim from the shared database like any other worker: the array size is how many GPUs work at once,
not how many experiments there are, and a task exits once the queue is empty (after waiting for runs
of dead workers, which it then runs). The database location travels in the job's environment
(OPTICAL_DB, exported by sbatch), not in job files on a shared disk: a URL may hold a password.

The time limit: submitit asks for SIGUSR2 90 s before it, and Slurm sends SIGTERM at it. The task
forwards either to its worker as SIGTERM, which drains: the run checkpoints and goes back to the
queue, to resume in another task or a later launch. (submitit's own handlers would kill the
worker outright.)

submitit's LocalExecutor (real processes) and DebugExecutor (in this process) run the same tasks
without Slurm: tests use them, and so can a box without Slurm.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import submitit
from submitit.core.utils import FailedJobError, FailedSubmissionError
from submitit.slurm import slurm as submitit_slurm

from engine.errors import ConfigError, OpticalError
from engine.running.launch import DB_ENV, DEFAULT_LEASE_S, WorkerOptions, engine_command
from engine.store import is_url, sqlite_path

#: Executors: slurm for a cluster; local (subprocesses) and debug (in-process) for tests.
EXECUTORS = ("slurm", "local", "debug")
_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


def parse_time(text: str) -> int:
    """Slurm's time forms → whole minutes: MINUTES, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS."""
    m = _TIME.match(text.strip())
    if not m:
        raise ConfigError(f"--time {text!r}: write minutes (90), HH:MM:SS (01:30:00) or D-HH:MM:SS")
    days, a, b, c = (int(g) if g else 0 for g in m.groups())
    if m.group(1) is None and m.group(3) is None:
        seconds = a * 60  # MINUTES
    elif m.group(1) is None:
        seconds = a * 3600 + b * 60 + c if m.group(4) is not None else a * 60 + b  # HH:MM:SS, MM:SS
    else:
        seconds = days * 86400 + a * 3600 + b * 60 + c  # D-HH[:MM[:SS]]
    if seconds < 60:
        raise ConfigError(f"--time {text!r}: at least one minute")
    return -(-seconds // 60)  # whole minutes, rounded up


@dataclass(frozen=True)
class SlurmPlan:
    """What to submit: `gpus` array tasks, each one worker on one GPU."""

    db: str
    gpus: int
    runs: Path
    logs: Path
    time_min: int = 24 * 60
    partition: str | None = None
    cpus_per_task: int = 8
    mem_gb: int | None = None
    lease_s: float = DEFAULT_LEASE_S
    device: str = "cuda:0"
    gpus_each: int = 1
    worker_args: tuple[str, ...] = field(default_factory=tuple)

    def worker_options(self) -> WorkerOptions:
        return WorkerOptions(until_empty=True, device=self.device, runs_dir=str(self.runs),
                             lease_s=self.lease_s)

    def worker_command(self) -> list[str]:
        """What each task runs; the database location reaches it through the job's environment."""
        cmd, _ = engine_command("engine.running.worker", self.db, *self.worker_options().argv())
        return cmd + list(self.worker_args)

    def sbatch_parameters(self) -> dict[str, Any]:
        """SlurmExecutor parameters (submitit's names for sbatch options)."""
        params: dict[str, Any] = {
            "job_name": "optical-worker", "time": self.time_min, "ntasks_per_node": 1,
            "cpus_per_task": self.cpus_per_task, "array_parallelism": self.gpus,
            # The task reads the database location from its environment (see the module doc).
            "additional_parameters": {"export": "ALL"},
        }
        if self.gpus_each:
            params["gpus_per_node"] = self.gpus_each
        if self.partition:
            params["partition"] = self.partition
        if self.mem_gb:
            params["mem"] = f"{self.mem_gb}GB"
        return params


def check_plan(plan: SlurmPlan, executor: str) -> None:
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor {executor!r}: one of {', '.join(EXECUTORS)}")
    if plan.gpus < 1:
        raise ConfigError(f"--gpus {plan.gpus}: at least 1")
    if executor == "slurm" and (not is_url(plan.db) or sqlite_path(plan.db) is not None):
        raise ConfigError(f"--db {plan.db}: Slurm tasks run on other nodes and need a database "
                          "server they all "
                          "reach (--db postgresql://…; start one with `optical db serve`); an "
                          "SQLite file on a "
                          "shared filesystem is not safe with many writers")


def sbatch_script(plan: SlurmPlan) -> str:
    """The sbatch file submitit would write for this plan (what `--dry-run` shows)."""
    submit_cmd = " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit",
                           shlex.quote(str(plan.logs))])
    return submitit_slurm._make_sbatch_string(command=submit_cmd, folder=plan.logs,
                                              map_count=plan.gpus,
                                              **plan.sbatch_parameters())


class WorkerTask:
    """One array task: runs the worker until the queue is empty; a signal from Slurm (or submitit's
    SIGUSR2 before the time limit) drains it. Raises if the worker failed, so the task shows as
    failed."""

    def __init__(self, command: list[str]) -> None:
        self.command = list(command)

    def __call__(self, index: int) -> int:
        proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL)

        def forward(signum: int, frame: FrameType | None) -> None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

        previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            previous = {s: signal.signal(s, forward)
                        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2)}
        try:
            code = proc.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if code != 0:
            raise RuntimeError(f"task {index}: the worker exited with status {code}")
        return code


def make_executor(kind: str, plan: SlurmPlan) -> submitit.Executor:
    plan.logs.mkdir(parents=True, exist_ok=True)
    if kind == "slurm":
        try:
            executor: submitit.Executor = submitit.SlurmExecutor(folder=plan.logs)
        except RuntimeError as exc:  # no srun on this machine
            raise ConfigError(f"cannot submit to Slurm from here: {exc} (--dry-run shows the job "
                              "script)") from None
        executor.update_parameters(**plan.sbatch_parameters())
        return executor
    if kind == "local":
        executor = submitit.LocalExecutor(folder=plan.logs)
        executor.update_parameters(timeout_min=plan.time_min, gpus_per_node=plan.gpus_each)
        return executor
    return submitit.DebugExecutor(folder=plan.logs)


def _remove(created: list[Path]) -> None:
    if created:
        shutil.rmtree(created[0], ignore_errors=True)
        for parent in created[1:]:
            try:
                parent.rmdir()  # only if empty
            except OSError:
                break


def submit(plan: SlurmPlan, executor: str = "slurm") -> list[submitit.Job[int]]:
    """Submit the job array; returns one job per task."""
    check_plan(plan, executor)
    # A refused submission leaves no change: the folders made for it go again.
    created = [p for p in (plan.logs, *plan.logs.parents) if not p.exists()]
    # sbatch, the local executor and the debug executor all copy the environment at submission.
    # The task's environment is engine_command's: OPTICAL_DB and this checkout on PYTHONPATH.
    _, env = engine_command("engine.running.worker", plan.db)
    saved = {key: os.environ.get(key) for key in (DB_ENV, "PYTHONPATH")}
    os.environ.update({key: env[key] for key in saved})
    try:
        ex = make_executor(executor, plan)
        # submitit prints sbatch's complaint to stderr before raising it: it is said once, below.
        with contextlib.redirect_stderr(io.StringIO()):
            return list(ex.map_array(WorkerTask(plan.worker_command()), list(range(plan.gpus))))
    except (OSError, subprocess.SubprocessError, FailedSubmissionError, FailedJobError) as exc:
        _remove(created)
        said = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())  # one line
        raise OpticalError(f"submission failed: {said}") from None
    except OpticalError:
        _remove(created)
        raise
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

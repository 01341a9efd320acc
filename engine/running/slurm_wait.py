"""Waiting for submitted worker tasks (`optical launch slurm --wait`) without Slurm's accounting.

submitit follows a Slurm job with `sacct`, which fails on a cluster without an accounting
database (slurmdbd). submitit then keeps the state UNKNOWN, and a task that ended without writing
its result (cancelled, killed, out of memory, past its time limit) is never seen as done:
`job.result()` waits forever. So on Slurm this waits with `squeue` (a task has ended once it has
left the queue) and asks `scontrol show job` how each ended; neither needs accounting. A cancelled
task counts as failed even when its worker drained in time and returned normally.
"""

from __future__ import annotations

import re
import subprocess
import time
from typing import Any

import submitit

from engine.errors import OpticalError

_FIELD = re.compile(r"(\w+)=(\S*)")


def _slurm(*cmd: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(list(cmd), check=False, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OpticalError(f"cannot follow the tasks: {cmd[0]}: {exc}") from None


def queued_tasks(job_ids: list[str]) -> list[str]:
    """The given tasks (array ids like 12_0) that Slurm still has pending or running."""
    arrays = sorted({j.split("_")[0] for j in job_ids})
    done = _slurm("squeue", "--noheader", "--array", "--jobs", ",".join(arrays), "--format", "%i")
    if done.returncode != 0:
        if "Invalid job id" in done.stderr:  # every job already purged: none is queued
            return []
        raise OpticalError(
            f"cannot follow the tasks: squeue: {done.stderr.strip() or done.returncode}"
        )
    listed = set(done.stdout.split())
    return [j for j in job_ids if j in listed]


def final_state(job_id: str) -> str:
    """How Slurm says a task ended, e.g. `CANCELLED (exit code 0:15)`, from `scontrol show job`."""
    shown = _slurm("scontrol", "show", "job", "--oneliner", job_id)
    for line in shown.stdout.splitlines() if shown.returncode == 0 else []:
        fields = dict(_FIELD.findall(line))
        task = f"{fields.get('ArrayJobId')}_{fields.get('ArrayTaskId')}"
        if job_id in (fields.get("JobId"), task):
            return f"{fields.get('JobState', 'UNKNOWN')} (exit code {fields.get('ExitCode', '?')})"
    return "state unknown: Slurm has forgotten the task and this cluster keeps no accounting to ask"


def wait_for_tasks(
    jobs: list[submitit.Job[int]], executor: str, poll_s: float = 1.0
) -> list[dict[str, Any]]:
    """Blocks until every task has ended; one {job_id, ok, error} per task."""
    if executor == "slurm":
        while queued_tasks([j.job_id for j in jobs]):
            time.sleep(poll_s)
    outcomes = []
    for job in jobs:
        state = final_state(job.job_id) if executor == "slurm" else ""
        if executor == "slurm" and not job.paths.result_pickle.exists():
            outcomes.append(
                {
                    "job_id": job.job_id,
                    "ok": False,
                    "error": f"ended without a result: {state}; log {job.paths.stderr}",
                }
            )
            continue
        if state.startswith("CANCELLED"):  # scancel: the worker drained before Slurm killed it
            outcomes.append(
                {
                    "job_id": job.job_id,
                    "ok": False,
                    "error": f"{state}: its worker stopped cleanly and handed its run back",
                }
            )
            continue
        try:
            job.result()
            outcomes.append({"job_id": job.job_id, "ok": True, "error": ""})
        # A failed task is reported, and the others are still waited for.
        except Exception as exc:  # noqa: BLE001
            outcomes.append(
                {
                    "job_id": job.job_id,
                    "ok": False,
                    "error": (str(exc).strip().splitlines() or [type(exc).__name__])[-1],
                }
            )
    return outcomes

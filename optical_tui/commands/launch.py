"""`optical launch slurm`: workers on a Slurm cluster, one per GPU, as one job array.

The submission itself lives in `engine.running.slurm` (submitit), imported inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from engine.running.launch import DEFAULT_LEASE_S
from optical_tui.commands.context import db_location
from optical_tui.commands.options import (
    JsonOption,
    device_option,
    lease_option,
    runs_dir_option,
)
from optical_tui.console import console, print_json

launch_app = typer.Typer(help="Start workers elsewhere: on a Slurm cluster, one job-array task per "
                              "GPU.",
                         no_args_is_help=True)


_SLURM_HELP = ("Submit `optical worker --until-empty` as a Slurm job array (through submitit), "
               "one task per GPU.\n"
               "\n"
               "Tasks claim experiments from the shared database (--db postgresql://…, e.g. "
               "from `optical db\n"
               "serve`) like any other worker and exit when the queue is empty; queue more and "
               "launch again.")


_GPUS_HELP = ("How many GPUs work at once: one array task (one worker) each.")
_TIME_LIMIT_HELP = ("Time limit per task: minutes, HH:MM:SS or D-HH:MM:SS. Near it, the worker "
                    "drains: its run checkpoints and goes back to the queue.")
_RUNS_DIR_HELP = ("Checkpoints and logs of runs, on a filesystem every node sees (env "
                  "OPTICAL_RUNS; default ./runs).")
_LOGS_HELP = ("submitit's job folder: job scripts and task logs (default: <runs dir>/slurm).")
_LEASE_HELP = ("Seconds without a heartbeat after which a run counts as lost.")
_DRY_RUN_HELP = ("Print the job script and the worker command; submit nothing.")
_EXECUTOR_HELP = ("slurm, or local/debug (submitit's executors without Slurm; tests).")
_DEVICE_HELP = ("Device inside each task (cuda:0; cpu for tests).")
_PARTITION_HELP = "Slurm partition (default: the cluster's)."
_CPUS_HELP = "CPUs per task (data loading, tokenisation)."
_MEM_HELP = "Memory per task in GB (default: the cluster's)."
_WAIT_HELP = "Wait until every task has ended and report each."


@launch_app.command("slurm", help=_SLURM_HELP)
def slurm(
    ctx: typer.Context,
    gpus: Annotated[int, typer.Option("--gpus", help=_GPUS_HELP, min=1)],
    partition: Annotated[str | None, typer.Option("--partition", "-p", help=_PARTITION_HELP,
                                                  show_default=False)] = None,
    time_limit: Annotated[str, typer.Option("--time", "-t", help=_TIME_LIMIT_HELP)] = "24:00:00",
    cpus_per_task: Annotated[int, typer.Option("--cpus-per-task", help=_CPUS_HELP, min=1)] = 8,
    mem_gb: Annotated[int | None, typer.Option("--mem-gb", help=_MEM_HELP, min=1,
                                               show_default=False)] = None,
    runs_dir: Annotated[str | None, runs_dir_option(_RUNS_DIR_HELP)] = None,
    logs: Annotated[Path | None,
                    typer.Option("--logs", help=_LOGS_HELP, show_default=False)] = None,
    lease: Annotated[float, lease_option(_LEASE_HELP)] = DEFAULT_LEASE_S,
    dry_run: Annotated[bool, typer.Option("--dry-run", help=_DRY_RUN_HELP)] = False,
    wait: Annotated[bool, typer.Option("--wait", help=_WAIT_HELP)] = False,
    as_json: JsonOption = False,
    executor: Annotated[str,
                        typer.Option("--executor", hidden=True, help=_EXECUTOR_HELP)] = "slurm",
    device: Annotated[str, device_option(_DEVICE_HELP, hidden=True)] = "cuda:0",
) -> None:
    from engine.devices import check_device_setting
    from engine.run_dirs import check_runs_root, runs_root, runs_root_is_default
    from engine.running.slurm import SlurmPlan, check_plan, parse_time, sbatch_script, submit
    from engine.store import open_store, redact

    location = db_location(ctx)
    check_device_setting(device, "--device")
    runs = check_runs_root(runs_root(location, runs_dir))
    plan = SlurmPlan(db=location, gpus=gpus, runs=runs, logs=(logs or runs / "slurm").resolve(),
                     time_min=parse_time(time_limit), partition=partition,
                     cpus_per_task=cpus_per_task,
                     mem_gb=mem_gb, lease_s=lease, device=device,
                     gpus_each=0 if device == "cpu" else 1)
    check_plan(plan, executor)
    worker = " ".join(plan.worker_command())
    if dry_run:
        # Plain print: a job script must not be wrapped to the terminal's width.
        print(sbatch_script(plan))
        print(f"# each of the {gpus} task(s) runs, with OPTICAL_DB={redact(location)} in its "
              "environment:")
        print(f"#   {worker}")
        return
    open_store(location).close()  # an unreachable database fails here, not in N task logs
    jobs = submit(plan, executor)
    if not as_json:
        _print_submitted(jobs, executor, location, runs, runs_root_is_default(location, runs_dir),
                         plan.logs)
    outcomes = _wait_for(jobs, executor, as_json) if wait else []
    if as_json:
        print_json({"executor": executor, "jobs": [j.job_id for j in jobs], "runs_dir": str(runs),
                    "logs": str(plan.logs), "worker_command": plan.worker_command(),
                    "tasks": outcomes})
    if any(not o["ok"] for o in outcomes):
        raise typer.Exit(1)



def _print_submitted(jobs: list[Any], executor: str, location: str, runs: Path,
                     default_runs: bool, logs: Path) -> None:
    from engine.store import redact

    console.print(f"submitted {len(jobs)} task(s) ({executor}): "
                  f"{', '.join(j.job_id for j in jobs)}")
    console.print(f"  database  {redact(location)}")
    shared = "  (default: must be on a filesystem every node sees)" if default_runs else ""
    console.print(f"  runs dir  {runs}{shared}")
    console.print(f"  task logs {logs}")
    console.print("  watch with: optical worker status   (or optical-tui)")


def _wait_for(jobs: list[Any], executor: str, as_json: bool) -> list[dict[str, Any]]:
    """Wait for every task (`--wait`); each one's outcome is printed unless --json."""
    from engine.running.slurm_wait import wait_for_tasks

    outcomes = wait_for_tasks(jobs, executor)
    if not as_json:
        for o in outcomes:
            console.print(f"  task {o['job_id']}: "
                          + ("finished" if o["ok"] else f"failed: {o['error']}"), markup=False)
    return outcomes

def register(app: typer.Typer) -> None:
    app.add_typer(launch_app, name="launch")

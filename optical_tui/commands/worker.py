"""`optical worker …`: run the queue on a device, list workers, stop them.

The worker itself lives in `engine.running.worker` (imported inside the commands: it pulls in torch
to discover devices).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from engine.devices import DEVICE_FORMS
from engine.errors import OpticalError
from engine.running.launch import DEFAULT_LEASE_S, DEFAULT_POLL_S, WorkerOptions
from engine.statuses import WorkerState
from optical_tui.commands.context import db_location, store_for
from optical_tui.commands.options import (
    JsonOption,
    device_option,
    json_option,
    lease_option,
    runs_dir_option,
)
from optical_tui.console import console, print_json, safe_text
from optical_tui.status_style import WORKER_STATE_STYLE

worker_app = typer.Typer(
    help="Run queued experiments on a device (one worker per GPU); list or stop workers.",
    invoke_without_command=True,
)


# The options' help: `optical worker`, then `worker status` and `worker stop`.
_HOST_NAME_HELP = ("Host name to register and show in `worker status` (default: this machine's; "
                   "useful in containers).")
_NOTIFY_TO_HELP = ("Tell a service when a run fails, a sweep finishes, the queue empties or a "
                   "worker is lost: an apprise URL (ntfy://topic, json://host:port/, slack://…, "
                   "mailto://…) or an apprise config file; repeatable. URLs with tokens belong in "
                   "env OPTICAL_NOTIFY (space-separated) or a file, not on a command line.")
_DEVICE_HELP = (f"{DEVICE_FORMS} (auto: a GPU when visible, else cpu); all: one worker per "
                "visible GPU; or a list such as cuda:0,cuda:2 (one worker each).")
_ONCE_HELP = "Run one experiment (or none if the queue is empty), then exit."
_MAX_EXPERIMENTS_HELP = "Exit after this many experiments (0 = no limit)."
_UNTIL_EMPTY_HELP = "Exit when the queue is empty instead of waiting for more (batch jobs)."
_DETACH_HELP = ("Keep running after the terminal closes; log and pid file beside an SQLite "
                "database, else in the current folder.")
_LEASE_HELP = "Seconds without a heartbeat after which a run counts as lost and is requeued."
_RUNS_DIR_HELP = ("Where checkpoints and logs go (env OPTICAL_RUNS; default: <name>.runs/ beside "
                  "an SQLite <name>.db, ./runs for a database server). Put it on a filesystem "
                  "every box sees, so a run lost on one box resumes on another.")
# `worker status`
_ALL_HELP = "Include stopped workers and gone ones (silent for 3 leases)."
_STALE_LEASE_HELP = ("A worker silent for longer than this counts as stale; for 3 times as long, "
                     "gone.")
# `worker stop`
_WORKER_ID_HELP = ("Worker id host:pid:device (see `optical worker status`); default: all "
                   "workers.")
_HOST_HELP = ("Stop every worker of this host (the host column of `optical worker status`): "
              "drains one box.")
_STOP_JSON_HELP = "Print how many workers were asked to stop, as JSON."


@worker_app.callback()
def run(
    ctx: typer.Context,
    device: Annotated[str, device_option(_DEVICE_HELP, "-d")] = "auto",
    once: Annotated[bool, typer.Option("--once", help=_ONCE_HELP)] = False,
    max_experiments: Annotated[int, typer.Option("--max-experiments", "-n",
                                                 help=_MAX_EXPERIMENTS_HELP, min=0)] = 0,
    until_empty: Annotated[bool, typer.Option("--until-empty", help=_UNTIL_EMPTY_HELP)] = False,
    detach: Annotated[bool, typer.Option("--detach", help=_DETACH_HELP)] = False,
    lease: Annotated[float, lease_option(_LEASE_HELP)] = DEFAULT_LEASE_S,
    poll: Annotated[float, typer.Option("--poll", help="Seconds between queue checks while idle.",
                                        min=0.1)] = DEFAULT_POLL_S,
    runs_dir: Annotated[str | None, runs_dir_option(_RUNS_DIR_HELP)] = None,
    host_name: Annotated[str | None,
                         typer.Option("--host-name", help=_HOST_NAME_HELP,
                                      show_default=False)] = None,
    notify_to: Annotated[list[str] | None,
                         typer.Option("--notify", metavar="URL",
                                      help=_NOTIFY_TO_HELP, show_default=False)] = None,
) -> None:
    """Claim queued experiments in priority order and run each in its own process.

    Stop with Ctrl-C, SIGTERM or `optical worker stop`: the current run checkpoints, goes back
    to the queue and resumes from there on the next worker.
    """
    if ctx.invoked_subcommand is not None:
        return
    from engine.devices import check_device_setting
    from engine.run_dirs import check_runs_root, runs_root, runs_root_is_default
    from engine.running.pool import is_pool_setting

    location = db_location(ctx)
    runs = check_runs_root(runs_root(location, runs_dir))
    _notify_setting(notify_to or [])
    if runs_root_is_default(location, runs_dir) and (detach or is_pool_setting(device)):
        # A single foreground worker says this itself; a detached one would say it only in its log.
        _warn_default_runs_dir(runs)
    options = WorkerOptions(device=device, lease_s=lease, poll_s=poll, once=once,
                            until_empty=until_empty, max_experiments=max_experiments,
                            runs_dir=runs_dir, host_name=host_name)
    if is_pool_setting(device):
        _run_pool(location, options.replace(runs_dir=str(runs)), detach)
        return
    check_device_setting(device, "--device")
    if detach:
        from engine.running.control import start_detached

        _detached(*start_detached(location, options.replace(runs_dir=str(runs))))
        return
    from engine.running.worker import QueueWorker

    QueueWorker.from_options(location, options).run()


def _warn_default_runs_dir(runs: Path) -> None:
    console.print(f"runs dir {runs} (the default for a database server): a run resumes on "
                  "another box only if that box sees this folder; share one with --runs-dir or "
                  "OPTICAL_RUNS", markup=False)


def _notify_setting(values: list[str]) -> None:
    """Check the targets here (one error line) and hand them to every worker this command starts
    through the environment, as the database URL travels: never argv, where `ps` shows tokens."""
    from engine import notify

    targets = notify.targets_from(values)
    if targets:
        notify.Notifier(targets, console.print)  # bad input fails in the user's terminal
        os.environ[notify.ENV] = " ".join(targets)


def _run_pool(location: str, options: WorkerOptions, detach: bool) -> None:
    """One worker per device, under one supervisor (engine/running/pool.py)."""
    from engine.running.pool import WorkerPool, expand_devices
    from engine.store import open_store

    devices = expand_devices(options.device)  # bad input fails here, in the user's terminal
    if detach:
        from engine.running.control import start_detached

        _detached(*start_detached(location, options.replace(device=",".join(devices)),
                                  module="engine.running.pool"),
                  what=f"{len(devices)} worker(s) ({', '.join(devices)}) started in the background "
                       "under one "
                       "supervisor")
        return
    open_store(location).close()  # a bad --db fails once, not in every worker
    code = WorkerPool(location, devices, options).run()
    if code:
        raise typer.Exit(code)


def _detached(pid: int, log: Path, pid_file: Path,
              what: str = "worker started in the background") -> None:
    console.print(f"{what}: pid {pid}")
    console.print(f"  log      {log}")
    console.print(f"  pid file {pid_file}")
    console.print("  stop it with: optical worker stop")


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


@worker_app.command("status")
def status(
    ctx: typer.Context,
    as_json: JsonOption = False,
    all_: Annotated[bool, typer.Option("--all", "-a", help=_ALL_HELP)] = False,
    lease: Annotated[float, lease_option(_STALE_LEASE_HELP)] = DEFAULT_LEASE_S,
) -> None:
    """List workers: host, pid, device, current experiment, last heartbeat, alive or stale."""
    from engine.running.control import worker_rows

    with store_for(ctx) as store:
        rows = worker_rows(store, lease, include_stopped=all_)
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("no workers running. Start one with: optical worker  (or --detach)")
        return
    table = Table(box=None, header_style="bold")
    # The worker id is host:pid:device, so these three columns spell it out.
    for col in ("host", "pid", "device", "experiment", "heartbeat", "state", "started"):
        table.add_column(col, justify="right" if col in ("pid", "experiment") else "left",
                         no_wrap=True)
    for r in rows:
        table.add_row(safe_text(r["host"]), str(r["pid"]), safe_text(r["device"]),
                      f"#{r['experiment_id']}" if r["experiment_id"] else "-",
                      _age(float(r["heartbeat_age_s"])),
                      Text(str(r["state"]),
                           style=WORKER_STATE_STYLE.get(WorkerState(str(r["state"])), "white")),
                      time.strftime("%m-%d %H:%M", time.localtime(float(r["started_at"]))))
    console.print(table)


_STOP_HELP = ("Ask workers to stop: the current run checkpoints and goes back to the queue, "
              "then the worker exits.")


@worker_app.command("stop", help=_STOP_HELP)
def stop(
    ctx: typer.Context,
    worker_id: Annotated[str | None, typer.Argument(metavar="[ID]", help=_WORKER_ID_HELP)] = None,
    host: Annotated[str | None,
                    typer.Option("--host", help=_HOST_HELP, show_default=False)] = None,
    as_json: Annotated[bool, json_option(_STOP_JSON_HELP)] = False,
) -> None:
    with store_for(ctx) as store:
        n = store.request_worker_stop(worker_id, host=host)
    if n == 0 and (worker_id is not None or host is not None):
        which = " and ".join(w for w in (f"id {worker_id!r}" if worker_id else "",
                                         f"host {host!r}" if host else "") if w)
        raise OpticalError(f"no running worker with {which}; see `optical worker status`")
    if as_json:
        print_json({"stop_requested": n})
        return
    console.print(f"stop requested for {n} worker(s); each checkpoints its run and exits within "
                  "seconds")


def register(app: typer.Typer) -> None:
    app.add_typer(worker_app, name="worker")

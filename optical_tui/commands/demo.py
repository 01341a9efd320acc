"""`optical demo`: the main job on the embedded defaults — queue the demo ratio sweep, run it
with a live progress display, print the ratio-study report.

Idempotent: a second `optical demo` on the same database continues the sweep (queues only the
ratio × seed runs it lacks, retries failed ones, resumes interrupted ones from their checkpoints)
instead of queueing duplicates. `--fresh` deletes the sweep and starts over.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from engine.config import load_config, with_run
from engine.errors import ConfigError, ExperimentNotFound, InvalidTransition, OpticalError
from engine.metric_keys import MACRO, PRIMARY_METRIC, PRIMARY_SETTING, Split, TrainKey, metric_key
from engine.run_dirs import run_dir, runs_root
from engine.running.launch import WorkerOptions, engine_command
from engine.statuses import ACTIVE, Status, WorkerStatus
from engine.store import Experiment, NewExperiment, Store, open_store, resolve_location, sqlite_path
from optical_tui.commands.config_options import config_option
from optical_tui.commands.context import db_location
from optical_tui.commands.options import db_option, device_option, plot_option
from optical_tui.console import console

SWEEP = "demo"
RATIOS = ("1:0", "3:1", "1:1", "1:3", "0:1")
REPO = Path(__file__).resolve().parent.parent.parent
DEMO_CONFIG = REPO / "configs" / "demo.toml"


def _comparable(config: dict) -> dict:
    """A run's config without its ratio and seed: what must match across the sweep."""
    return {s: {k: v for k, v in sec.items() if not (s == "train" and k in ("ratio", "seed"))}
            for s, sec in config.items()}


def plan_sweep(store: Store, config_path: Path, seeds: int, fresh: bool) -> list[str]:
    """Bring the sweep to ratios × seeds 0..N-1: queue what is missing, retry failed runs.
    Returns lines telling the user what happened."""
    from engine.running.provenance import code_version

    base = load_config(config_path)
    lines = []
    existing = store.list_experiments(name=SWEEP)
    if fresh and existing:
        running = [e.id for e in existing if e.status == Status.RUNNING]
        if running:
            raise InvalidTransition(f"sweep {SWEEP!r} has running experiments "
                                    f"({', '.join(map(str, running))}); "
                                    "stop their worker (optical worker stop) before --fresh")
        store.remove([e.id for e in existing])
        for e in existing:  # their checkpoints would only fill the disk
            shutil.rmtree(run_dir(runs_root(store.location), e.id), ignore_errors=True)
        lines.append(f"--fresh: removed {len(existing)} experiment(s) of sweep {SWEEP!r}")
        existing = []
    wanted = {(r, s): with_run(base, r, s).to_dict() for r in RATIOS for s in range(seeds)}
    by_key: dict[tuple[str, int], list[Experiment]] = {}
    for e in existing:
        by_key.setdefault((e.ratio, e.seed), []).append(e)
    if any(_comparable(e.config) != _comparable(wanted[(e.ratio, e.seed)])
           for e in existing if (e.ratio, e.seed) in wanted):
        lines.append(f"[yellow]warning: sweep {SWEEP!r} was queued with a different "
                     f"{config_path.name}; "
                     "use --fresh to rerun it with the current one[/yellow]")
    new, retry = [], []
    for (ratio, seed), config in wanted.items():
        runs = by_key.get((ratio, seed), [])
        if any(e.status in (*ACTIVE, Status.DONE) for e in runs):
            continue
        if runs:
            retry.append(max(runs, key=lambda e: e.id).id)
        else:
            new.append(NewExperiment(SWEEP, ratio, seed, config, code_version=code_version()))
    if new:
        store.add_experiments(new)
        lines.append(f"queued {len(new)} experiment(s): ratios {', '.join(RATIOS)} × seeds "
                     f"0–{seeds - 1}")
    if retry:
        store.retry(retry)
        lines.append(f"re-queued {len(retry)} failed or cancelled run(s): "
                     + ", ".join(f"#{i}" for i in retry))
    done = sum(1 for e in existing if e.status == Status.DONE)
    if existing and not new and not retry:
        lines.append(f"continuing sweep {SWEEP!r}: {done} run(s) done, nothing new to queue")
    elif existing:
        lines.append(f"continuing sweep {SWEEP!r}: {done} run(s) already done")
    return lines


class SweepProgress:
    """Progress bars for the sweep (one overall, one per running experiment), from the database."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.overall = progress.add_task(f"sweep {SWEEP!r}", total=None)
        self.current: dict[int, TaskID] = {}

    def update(self, store: Store) -> bool:
        """Refresh the bars; True once no run of the sweep is queued or running."""
        exps = store.list_experiments(name=SWEEP)
        live = [e for e in exps if e.status != Status.CANCELLED]
        total = sum(e.config["train"]["steps"] for e in live)
        # A failed run will not advance any more: count it as finished so the bar can complete.
        done_steps = sum(e.config["train"]["steps"] if e.status in (Status.DONE, Status.FAILED)
                         else e.step for e in live)
        n_done = sum(e.status == Status.DONE for e in exps)
        n_failed = sum(e.status == Status.FAILED for e in exps)
        self.progress.update(self.overall, total=total, completed=done_steps,
                             description=f"sweep {SWEEP!r}: {n_done}/{len(live)} runs done"
                                         + (f", {n_failed} failed" if n_failed else ""))
        running = {e.id: e for e in exps if e.status == Status.RUNNING}
        for eid in list(self.current):
            if eid not in running:
                self.progress.remove_task(self.current.pop(eid))
        for e in running.values():
            desc = f"  #{e.id} ratio {e.ratio} seed {e.seed}{_latest(store, e.id)}"
            if e.id not in self.current:
                self.current[e.id] = self.progress.add_task(desc, total=e.total_steps or None)
            self.progress.update(self.current[e.id], description=desc, completed=e.step,
                                 total=e.total_steps or None)
        return not any(e.status in ACTIVE for e in exps)


def _latest(store: Store, exp_id: int) -> str:
    quick = metric_key(Split.QUICK, PRIMARY_SETTING, MACRO, PRIMARY_METRIC)
    last: dict[str, tuple[int, float]] = {}
    for m in store.metrics(exp_id, keys=[TrainKey.LOSS, quick]):
        if m.key not in last or m.step >= last[m.key][0]:
            last[m.key] = (m.step, m.value)
    parts = []
    if TrainKey.LOSS in last:
        parts.append(f"loss {last[TrainKey.LOSS][1]:.3f}")
    if quick in last:
        step, value = last[quick]
        parts.append(f"quick Mul mAP {value:.3f} @ step {step}")
    return (": " + ", ".join(parts)) if parts else ""


def _echo(stream: IO[str], progress: Progress) -> None:
    for line in stream:
        progress.console.print(line.rstrip(), markup=False, highlight=False, style="bright_black")


def worker_command(db: str, device: str, poll_s: float) -> tuple[list[str], dict[str, str]]:
    """The demo's worker: its database location goes through the environment, never argv."""
    options = WorkerOptions(device=device, poll_s=poll_s)
    return engine_command("engine.running.worker", db, *options.argv())


def run_sweep(db: str, device: str, poll_s: float = 1.0) -> bool:
    """Run `optical worker` (its own process, exactly as a user would) until the sweep has nothing
    queued or running, showing progress from the database. True when the sweep got there.

    The worker is a separate process so this one holds a single database connection, like every
    other process of the tool. Ctrl-C reaches both (same process group): the worker drains.
    """
    cmd, env = worker_command(db, device, poll_s)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TimeRemainingColumn(), console=console)
    finished = False
    with progress, open_store(db) as store:
        bars = SweepProgress(progress)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL,
                                text=True, env=env)
        echo = threading.Thread(target=_echo, args=(proc.stdout, progress), daemon=True)
        echo.start()
        try:
            while proc.poll() is None:
                finished = bars.update(store)
                if finished:
                    # Stop the worker once it is idle, so it never drains a run of another sweep.
                    for w in store.list_workers():
                        if (w.pid == proc.pid and w.status == WorkerStatus.IDLE
                                and not w.stop_requested):
                            store.request_worker_stop(w.id)
                time.sleep(poll_s)
            finished = bars.update(store)
        except KeyboardInterrupt:
            progress.console.print("stopping: the current run checkpoints and goes back to the "
                                   "queue "
                                   "(Ctrl-C again to stop at once)")
            try:
                proc.wait()
            except KeyboardInterrupt:
                proc.wait()
            finished = bars.update(store)
        echo.join(timeout=5)
    if proc.returncode not in (0, None) and not finished:
        raise OpticalError(f"the worker exited with status {proc.returncode} (its output is above)")
    return finished


_DEMO_HELP = ("Queue the ratio sweep 1:0, 3:1, 1:1, 1:3, 0:1 × seeds with configs/demo.toml, "
              "run it, report.")
_SEEDS_HELP = "Seeds per ratio (0..N-1); paired comparisons need ≥ 2."
_DB_HELP = "Database for the demo (default: the global --db, else ./experiments.db)."
_FRESH_HELP = "Delete the demo sweep (runs, metrics, checkpoints) and start over."
_DEVICE_HELP = "Worker device: auto, cpu, cuda or cuda:N."
_PLOT_HELP = "Where to save the plot (default: ratio_study.png beside the database)."


def demo(
    ctx: typer.Context,
    seeds: Annotated[int, typer.Option("--seeds", help=_SEEDS_HELP, min=1)] = 3,
    db: Annotated[str | None, db_option(_DB_HELP)] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help=_FRESH_HELP)] = False,
    config: Annotated[Path, config_option("Sweep config.")] = DEMO_CONFIG,
    device: Annotated[str, device_option(_DEVICE_HELP, "-d")] = "auto",
    plot: Annotated[Path | None, plot_option(_PLOT_HELP)] = None,
) -> None:
    from engine.study.core import build_report
    from engine.study.plot import save_plot
    from optical_tui.commands.report import print_report

    location = resolve_location(db) if db else db_location(ctx)  # the demo's --db, else the global
    file = sqlite_path(location)
    if file is not None:
        file = file.resolve()
        file.parent.mkdir(parents=True, exist_ok=True)
        location = str(file)
    if not config.is_file():
        raise ConfigError(f"demo config not found: {config} (run from the repository or pass "
                          "--config)")
    started = time.monotonic()
    with open_store(location) as store:
        for line in plan_sweep(store, config, seeds, fresh):
            console.print(line)
    # `make demo` runs from the virtual environment, which is not on the user's PATH: name the
    # dashboard by its full path so the hint works when pasted into another terminal.
    db_flag = f"--db {location}"
    tui = Path(sys.executable).parent / "optical-tui"
    tui_cmd = (str(tui) if tui.exists() and shutil.which("optical-tui") != str(tui)
               else "optical-tui")
    console.print(f"[bold]Watch it live:[/bold] in another terminal (or SSH session) run  "
                  f"[cyan]{tui_cmd} --db {location}[/cyan]", markup=True, soft_wrap=True)
    console.print("Ctrl-C stops cleanly: the current run checkpoints; `optical demo` again resumes "
                  "it.")
    with open_store(location) as store:
        pending = any(e.status in ACTIVE for e in store.list_experiments(name=SWEEP))
    completed = run_sweep(location, device) if pending else True
    minutes = (time.monotonic() - started) / 60
    if not pending:
        console.print(f"sweep {SWEEP!r} is already complete (use --fresh to run it again)")
    elif not completed:
        console.print(f"[yellow]stopped after {minutes:.1f} min before the sweep finished; run "
                      "`optical demo` "
                      "again to continue it.[/yellow] Partial report:", markup=True)
    else:
        console.print(f"[green]sweep {SWEEP!r} finished in {minutes:.1f} min[/green]", markup=True)
    with open_store(location) as store:
        try:
            report = build_report(store, sweep=SWEEP)
        except ExperimentNotFound:
            raise ExperimentNotFound(
                f"no run of sweep {SWEEP!r} is done yet, so there is nothing to report; see "
                f"`optical {db_flag} queue list --name {SWEEP}` and `optical {db_flag} queue show "
                "ID`") from None
    console.print()
    print_report(report)
    plot_path = plot or (file.parent if file is not None else Path.cwd()) / "ratio_study.png"
    save_plot(report, plot_path)
    console.print(f"\nplot: {plot_path}")
    console.print(f"again, or other formats:  optical {db_flag} report --sweep {SWEEP} "
                  "[--format md|csv|json|tex] [--setting mo|cr|mul] [--plot FILE.svg]",
                  markup=False)


def register(app: typer.Typer) -> None:
    app.command("demo", help=_DEMO_HELP)(demo)

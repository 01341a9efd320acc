"""`optical run --config FILE`: one experiment in the foreground, without the queue.

For debugging a config and for users who do not need the queue. Ctrl-C once checkpoints and
stops after the current step (rerunning the same command resumes); twice aborts at once.
"""

from __future__ import annotations

import hashlib
import json
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from engine.config import load_config, parse_ratio
from optical_tui.common import console, err_console, print_json


def default_run_dir(config: Path | None, cfg: Any) -> Path:
    """runs/<config stem>-<ratio>-s<seed>-<config hash>: the same command resumes, a changed one starts afresh."""
    stem = config.stem if config else "defaults"
    ratio = str(parse_ratio(cfg.train.ratio)).replace(":", "-")
    digest = hashlib.sha256(cfg.to_json().encode()).hexdigest()[:8]
    return Path("runs") / f"{stem}-{ratio}-s{cfg.train.seed}-{digest}"


class CliReporter:
    """Reporter for the foreground run: Rich progress bar, event lines, metrics.jsonl in the run dir."""

    def __init__(self, run_dir: Path, progress: Progress | None) -> None:
        self.latest: dict[str, float] = {}
        self.final_step = 0
        self.stop_requested = False
        self._progress = progress
        self._task = progress.add_task("training", total=None, status="") if progress else None
        self._metrics_file = run_dir / "metrics.jsonl"

    def metrics(self, step: int, values: Mapping[str, float]) -> None:
        self.latest.update(values)
        with open(self._metrics_file, "a", encoding="utf-8") as fh:
            fh.writelines(json.dumps({"step": step, "key": key, "value": value, "time": time.time()}) + "\n" for key, value in values.items())
        if self._progress is not None and self._task is not None:
            bits = []
            if "train/loss" in self.latest:
                bits.append(f"loss {self.latest['train/loss']:.4f}")
            if "train/loss_ot" in self.latest:
                bits.append(f"ot {self.latest['train/loss_ot']:.4f}")
            if "eval/macro/mul/map" in self.latest:
                bits.append(f"mul mAP {self.latest['eval/macro/mul/map']:.4f}")
            if bits:
                self._progress.update(self._task, status=" · ".join(bits))

    def event(self, kind: str, message: str) -> None:
        if self._progress is not None:
            colour = {"warning": "yellow", "checkpoint": "cyan", "eval": "green"}.get(kind, "white")
            self._progress.console.print(f"[{colour}]{kind:>10}[/{colour}] {message}", markup=True, highlight=False)

    def progress(self, step: int, total: int) -> None:
        self.final_step = step
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=step, total=total)

    def should_stop(self) -> bool:
        return self.stop_requested


def summary_table(values: Mapping[str, float]) -> Table:
    table = Table(title="MLQA-R mAP (macro over query languages; groups)", show_lines=False)
    table.add_column("split")
    for col in ("mo", "cr", "mul", "high mul", "low mul", "rank dist"):
        table.add_column(col, justify="right")
    for prefix in ("eval", "full"):
        if f"{prefix}/macro/mul/map" not in values:
            continue
        cells = [values.get(f"{prefix}/macro/{s}/map") for s in ("mo", "cr", "mul")]
        cells += [values.get(f"{prefix}/group/{g}/mul/map") for g in ("high", "low")]
        cells.append(values.get(f"{prefix}/macro/mul/rank_distance"))
        table.add_row(prefix, *("-" if v is None else f"{v:.4f}" if i < 5 else f"{v:.1f}"
                                for i, v in enumerate(cells)))
    return table


def run(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML file overriding the defaults (see configs/).")] = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", help="Override one key, e.g. --set train.steps=20. Repeatable.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Run directory (checkpoints, metrics.jsonl). Default: runs/<config>-<ratio>-s<seed>-<hash>; rerunning resumes.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="No live display; print the outcome and final metrics as JSON.")] = False,
) -> None:
    """Train and evaluate one experiment in the foreground (resumes from the run directory's checkpoint)."""
    cfg = load_config(config, overrides or [])
    run_dir = out or default_run_dir(config, cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    from engine.train import run_training  # heavy (torch, transformers, POT): only when running

    progress = None if as_json else Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn(), TextColumn("{task.fields[status]}"), console=console, transient=False)
    reporter = CliReporter(run_dir, progress)

    def on_sigint(_sig: int, _frame: Any) -> None:
        reporter.stop_requested = True
        err_console.print("stopping after this step (checkpoint); Ctrl-C again aborts")
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        if progress is not None:
            console.print(f"run directory: {run_dir}")
            with progress:
                status = run_training(cfg, run_dir, reporter)
        else:
            status = run_training(cfg, run_dir, reporter)
    finally:
        signal.signal(signal.SIGINT, previous)

    if as_json:
        print_json({"status": status, "run_dir": str(run_dir), "step": reporter.final_step,
                    "metrics": reporter.latest})
    else:
        console.print(summary_table(reporter.latest))
        if status == "stopped":
            console.print(f"stopped at step {reporter.final_step}; rerun the same command to resume")
    if status == "stopped":
        raise typer.Exit(130)


def register(app: typer.Typer) -> None:
    app.command("run")(run)

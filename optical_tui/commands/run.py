"""`optical run --config FILE`: one experiment in the foreground, without the queue.

For debugging a config and for users who do not need the queue. Ctrl-C once checkpoints and
stops after the current step (rerunning the same command resumes); twice aborts at once.
"""

from __future__ import annotations

import hashlib
import json
import shutil
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
from engine.metric_keys import (
    MACRO,
    PRIMARY_METRIC,
    PRIMARY_SETTING,
    Split,
    TrainKey,
    lang_setting_table,
    metric_key,
    split_prefix,
)
from engine.statuses import EventKind, RunOutcome
from optical_tui.commands.config_options import ConfigFileOption, set_option
from optical_tui.commands.options import json_option
from optical_tui.console import console, err_console, lang_setting_rich, print_json


def default_run_dir(config: Path | None, cfg: Any) -> Path:
    """runs/<config stem>-<ratio>-s<seed>-<config hash>: the same command resumes, a changed one
    starts afresh."""
    stem = config.stem if config else "defaults"
    ratio = str(parse_ratio(cfg.train.ratio)).replace(":", "-")
    digest = hashlib.sha256(cfg.to_json().encode()).hexdigest()[:8]
    return Path("runs") / f"{stem}-{ratio}-s{cfg.train.seed}-{digest}"


class CliReporter:
    """Reporter for the foreground run: Rich progress bar, event lines, metrics.jsonl in the run
    dir.

    Like the store, metrics.jsonl holds each (key, step) once: a resumed run re-reports the steps
    after its checkpoint, and those already in the file are not written again."""

    def __init__(self, run_dir: Path, progress: Progress | None) -> None:
        self.latest: dict[str, float] = {}
        self.final_step = 0
        self.stop_requested = False
        self._progress = progress
        self._task = progress.add_task("training", total=None, status="") if progress else None
        self._metrics_file = run_dir / "metrics.jsonl"
        self._written = _points_in(self._metrics_file)

    def metrics(self, step: int, values: Mapping[str, float]) -> None:
        self.latest.update(values)
        new = {k: v for k, v in values.items() if (str(k), int(step)) not in self._written}
        self._written.update((str(k), int(step)) for k in new)
        with open(self._metrics_file, "a", encoding="utf-8") as fh:
            fh.writelines(json.dumps({"step": step, "key": str(key), "value": value,
                                      "time": time.time()}) + "\n"
                          for key, value in new.items())
        if self._progress is not None and self._task is not None:
            quick = metric_key(Split.QUICK, PRIMARY_SETTING, MACRO, PRIMARY_METRIC)
            bits = []
            if TrainKey.LOSS in self.latest:
                bits.append(f"loss {self.latest[TrainKey.LOSS]:.4f}")
            if TrainKey.LOSS_OT in self.latest:
                bits.append(f"ot {self.latest[TrainKey.LOSS_OT]:.4f}")
            if quick in self.latest:
                bits.append(f"mul mAP {self.latest[quick]:.4f}")
            if bits:
                self._progress.update(self._task, status=" · ".join(bits))

    def event(self, kind: str, message: str) -> None:
        if self._progress is not None:
            colour = {EventKind.WARNING: "yellow", EventKind.CHECKPOINT: "cyan",
                      EventKind.EVAL: "green"}.get(
                EventKind(kind) if kind in set(EventKind) else EventKind.INFO, "white")
            self._progress.console.print(f"[{colour}]{kind:>10}[/{colour}] {message}", markup=True,
                                         highlight=False)

    def progress(self, step: int, total: int) -> None:
        self.final_step = step
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=step, total=total)

    def should_stop(self) -> bool:
        return self.stop_requested

    def before_checkpoint(self, step: int) -> None:
        """Nothing to flush: each metrics() call has already appended its lines to the file."""


def _points_in(path: Path) -> set[tuple[str, int]]:
    """(key, step) of every point already in a metrics.jsonl (a torn last line is skipped)."""
    seen: set[tuple[str, int]] = set()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return seen
    for line in lines:
        try:
            row = json.loads(line)
            seen.add((str(row["key"]), int(row["step"])))
        except (ValueError, KeyError, TypeError):
            continue
    return seen


def summary_table(values: Mapping[str, float], cfg: Any) -> Table:
    """The final evaluation as query language × setting: the full benchmark when it ran."""
    split = Split.FULL if any(k.startswith(split_prefix(Split.FULL))
                              for k in values) else Split.QUICK
    groups = {"high": tuple(cfg.eval.high), "low": tuple(cfg.eval.low)}
    zero_shot = [x for x in cfg.eval.langs if x not in cfg.data.train_langs]
    table = lang_setting_table(values.get, split, cfg.eval.langs, cfg.eval.settings, groups,
                               zero_shot=zero_shot)
    scope = "full MLQA-R" if split == Split.FULL else "MLQA-R quick subset"
    return lang_setting_rich(table, f"{scope} at the last step (* zero-shot)")


_RUN_HELP = ("Train and evaluate one experiment in the foreground (resumes from the run "
             "directory's checkpoint).")
_OUT_HELP = ("Run directory (checkpoints, metrics.jsonl). Default: "
             "runs/<config>-<ratio>-s<seed>-<hash>; rerunning resumes.")
_JSON_HELP = "No live display; print the outcome and final metrics as JSON."


def run(
    config: ConfigFileOption = None,
    overrides: Annotated[list[str] | None, set_option("train.steps=20")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help=_OUT_HELP)] = None,
    as_json: Annotated[bool, json_option(_JSON_HELP)] = False,
) -> None:
    cfg = load_config(config, overrides or [])
    run_dir = out or default_run_dir(config, cfg)
    created = [p for p in (run_dir, *run_dir.parents) if not p.exists()]  # to undo on early failure
    run_dir.mkdir(parents=True, exist_ok=True)
    from engine.train import run_training  # heavy (torch, transformers, POT): only when running

    progress = None if as_json else Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(), TextColumn("{task.fields[status]}"), console=console,
        transient=False)
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
    except BaseException:
        _undo_folders(created)
        raise
    finally:
        signal.signal(signal.SIGINT, previous)

    if as_json:
        print_json({"status": status, "run_dir": str(run_dir), "step": reporter.final_step,
                    "metrics": reporter.latest})
    else:
        console.print(summary_table(reporter.latest, cfg))
        if status == RunOutcome.STOPPED:
            console.print(f"stopped at step {reporter.final_step}; rerun the same command to "
                          "resume")
    if status == RunOutcome.STOPPED:
        raise typer.Exit(130)


#: What a run writes before it trains: a failure that leaves only these left nothing worth keeping.
STARTUP_FILES = frozenset({"config.json"})


def _undo_folders(created: list[Path]) -> None:
    """After a failure before the first result (bad data file, bad model...): remove the run folder
    and the parents this command created, so that a failed command leaves no change."""
    if not created:
        return  # the folder was there before: a resumed run's files are not ours to remove
    run_dir = created[0]
    if any(p.name not in STARTUP_FILES for p in run_dir.iterdir()):
        return  # it trained, checkpointed or evaluated: rerunning resumes from there
    shutil.rmtree(run_dir, ignore_errors=True)
    for parent in created[1:]:
        try:
            parent.rmdir()  # only if empty
        except OSError:
            break


def register(app: typer.Typer) -> None:
    app.command("run", help=_RUN_HELP)(run)

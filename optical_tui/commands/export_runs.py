"""`optical export-runs`: chosen runs or sweeps into TensorBoard, MLflow and W&B (engine/trackers/).

The writers are optional extras (`pip install 'optical-tui[tensorboard,mlflow,wandb]'`), imported
only here, when asked for; none imports torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from engine.errors import ConfigError
from optical_tui.commands.context import parse_ids, store_for
from optical_tui.commands.options import SweepIdsArgument, json_option, sweep_option
from optical_tui.console import console, print_json

_EXPORT_RUNS_HELP = ("Write runs (ids, --sweep, or the newest sweep) to TensorBoard, MLflow "
                     "and/or W&B: every metric\n"
                     "point with its step and time, the frozen config as hyperparameters, the "
                     "final metrics.\n"
                     "\n"
                     "Exporting a run again replaces what an earlier export wrote for it.")
_TENSORBOARD_HELP = ("Write TensorBoard event files: DIR/<sweep>/<id>-<ratio>-s<seed>/ (view: "
                     "tensorboard --logdir DIR). Needs the tensorboard extra: pip install "
                     "'optical-tui\\[tensorboard]'.")
_MLFLOW_HELP = ("Write an MLflow store DIR/mlflow.db, one MLflow experiment per sweep (view: "
                "mlflow ui --backend-store-uri sqlite:///DIR/mlflow.db). Needs the mlflow extra: "
                "pip install 'optical-tui\\[mlflow]'.")
_WANDB_HELP = ("Write W&B offline runs under DIR/wandb/ (upload later: wandb sync "
               "DIR/wandb/offline-run-*). Needs the wandb extra: pip install "
               "'optical-tui\\[wandb]'.")
_WANDB_PROJECT_HELP = "W&B project the offline runs belong to."


def _writer_option(flag: str, help: str) -> Any:
    """Where one tracker's files go: a folder, none by default (that tracker is skipped)."""
    return typer.Option(flag, metavar="DIR", help=help, show_default=False)


def export_runs(
    ctx: typer.Context,
    ids: SweepIdsArgument = None,
    sweep: Annotated[list[str] | None,
                     sweep_option("Every run of this sweep (repeatable).")] = None,
    tensorboard: Annotated[Path | None, _writer_option("--tensorboard", _TENSORBOARD_HELP)] = None,
    mlflow: Annotated[Path | None, _writer_option("--mlflow", _MLFLOW_HELP)] = None,
    wandb: Annotated[Path | None, _writer_option("--wandb", _WANDB_HELP)] = None,
    wandb_project: Annotated[str, typer.Option("--wandb-project",
                                               help=_WANDB_PROJECT_HELP)] = "optical-tui",
    as_json: Annotated[bool, json_option("Print what was written, as JSON.")] = False,
) -> None:
    from engine.study.core import select_experiments
    from engine.trackers import load_runs

    if tensorboard is None and mlflow is None and wandb is None:
        raise ConfigError("choose where to write: --tensorboard DIR, --mlflow DIR and/or --wandb "
                          "DIR")
    wanted = parse_ids(ids or [])
    with store_for(ctx) as store:
        if sweep:
            experiments = [e for name in dict.fromkeys(sweep)
                           for e in select_experiments(store, name, None)[0]]
            if wanted:
                raise ConfigError("give either --sweep NAME or experiment ids, not both")
        else:
            experiments = select_experiments(store, None, wanted)[0]
        runs = load_runs(store, experiments)
    out: dict[str, object] = {"experiments": [r.experiment.id for r in runs],
                              "points": sum(len(r.points) for r in runs)}
    if tensorboard is not None:
        from engine.trackers.tensorboard_files import write_tensorboard

        out["tensorboard"] = [str(p) for p in write_tensorboard(runs, tensorboard)]
    if mlflow is not None:
        from engine.trackers.mlflow_store import tracking_uri, write_mlflow

        out["mlflow"] = {"tracking_uri": tracking_uri(mlflow),
                         "run_ids": write_mlflow(runs, mlflow)}
    if wandb is not None:
        from engine.trackers.wandb_offline import write_wandb

        out["wandb"] = [str(p) for p in write_wandb(runs, wandb, project=wandb_project)]
    if as_json:
        print_json(out)
        return
    console.print(f"{len(runs)} run(s), {out['points']} metric points", markup=False)
    if tensorboard is not None:
        console.print(f"  tensorboard  tensorboard --logdir {tensorboard}", markup=False)
    if mlflow is not None:
        console.print(f"  mlflow       mlflow ui --backend-store-uri {tracking_uri(mlflow)}",
                      markup=False)
    if wandb is not None:
        console.print(f"  wandb        wandb sync {Path(wandb) / 'wandb'}/offline-run-*",
                      markup=False)


def register(app: typer.Typer) -> None:
    app.command("export-runs", help=_EXPORT_RUNS_HELP)(export_runs)

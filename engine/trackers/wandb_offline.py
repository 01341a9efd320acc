"""Weights & Biases offline runs, for `wandb sync` to upload later (no account needed to write).

    DIR/wandb/offline-run-<time>-<run id>/run-<run id>.wandb

One W&B run per experiment: project `--wandb-project` (default: optical-tui), group = the sweep,
name `<id>-<ratio>-s<seed>`, config = the frozen config plus ratio and seed, tags = sweep and
status. Each step's points are one history row at that step (W&B steps only grow, so rows go out in
step order); the summary holds the final evaluation metrics. The W&B run id is derived from the
experiment id and its creation time, so a second export of the same run is the same W&B run.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from engine.trackers import RunRecord, need, tracker_key

PROJECT = "optical-tui"


def run_id(run: RunRecord) -> str:
    e = run.experiment
    return f"optical-{e.id}-{int(e.created_at)}"


def write_wandb(runs: Sequence[RunRecord], out: Path, project: str = PROJECT) -> list[Path]:
    """The offline run folders written, in the order of `runs`."""
    need("wandb", "wandb")
    os.environ.setdefault("WANDB_SILENT", "true")
    import wandb

    Path(out).mkdir(parents=True, exist_ok=True)
    settings = wandb.Settings(mode="offline", console="off", x_disable_stats=True, disable_git=True,
                              save_code=False, x_disable_meta=True)
    folders = []
    for run in runs:
        e = run.experiment
        w = wandb.init(dir=str(out), project=project, group=e.name, name=run.label, id=run_id(run),
                       config={**run.experiment.config, "ratio": e.ratio, "seed": e.seed},
                       tags=[e.name[:64], str(e.status)], job_type="optical-export",
                       settings=settings,
                       reinit="create_new")
        try:
            rows: dict[int, dict[str, float]] = defaultdict(dict)
            for m in run.points:
                rows[m.step][tracker_key(m.key)] = m.value
            for step in sorted(rows):
                w.log(rows[step], step=step)
            w.summary.update(run.final_metrics())
            folders.append(Path(w.dir).parent)
        finally:
            w.finish()
    return folders

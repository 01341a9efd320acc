"""TensorBoard event files (tensorboardX: a writer without TensorFlow or torch).

    DIR/<sweep>/<id>-<ratio>-s<seed>/events.out.tfevents.*

One run folder per experiment (`tensorboard --logdir DIR` lists them, grouped by sweep). Every
point is a scalar under its metric key (`tracker_key`) at its step and wall time. The run's
hyperparameters (its flattened config) and its final evaluation metrics go to the HParams dashboard,
whose metric columns are those scalar tags, so the table and the curves agree.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from engine.files import replace_dir
from engine.trackers import RunRecord, need, safe_name, tracker_key


def write_tensorboard(runs: Sequence[RunRecord], out: Path) -> list[Path]:
    need("tensorboardX", "tensorboard")
    written = []
    for run in runs:
        folder = Path(out) / safe_name(run.experiment.name) / run.label
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            _write_run(run, tmp)
            replace_dir(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        written.append(folder)
    return written


def _write_run(run: RunRecord, folder: Path) -> None:
    from tensorboardX import SummaryWriter
    from tensorboardX.summary import hparams

    with SummaryWriter(logdir=str(folder), flush_secs=3600, max_queue=100_000) as writer:
        for m in run.points:
            writer.add_scalar(tracker_key(m.key), m.value, global_step=m.step, walltime=m.time)
        final = run.final_metrics()
        if final:
            experiment, start, end = hparams(run.params(), final)
            file_writer = writer._get_file_writer()  # add_hparams would write to another run folder
            for summary in (experiment, start, end):
                file_writer.add_summary(summary)

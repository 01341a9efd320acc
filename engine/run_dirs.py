"""Where a run's files live: `<runs root>/<experiment id>/` (checkpoints, child.log, config.json).

The runs root is `--runs-dir`, else env OPTICAL_RUNS, else `runs/` beside an SQLite database
(or in the current folder for a database server). Put it on a shared filesystem when several
boxes share one queue, so a run reclaimed on another box finds its checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path

from engine.store import sqlite_path


def runs_root(db_location: str, setting: str | Path | None = None) -> Path:
    chosen = setting or os.environ.get("OPTICAL_RUNS")
    if chosen:
        return Path(chosen).expanduser().resolve()
    path = sqlite_path(db_location)
    base = path.resolve().parent if path is not None else Path.cwd()
    return base / "runs"


def run_dir(root: Path, exp_id: int) -> Path:
    return Path(root) / str(exp_id)

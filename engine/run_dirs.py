"""Where a run's files live, who owns them, and when they go.

    <runs root>/<experiment id>/run.json                       whose folder this is
    <runs root>/<experiment id>/attempt-<n>/child.log           what attempt n printed
    <runs root>/<experiment id>/attempt-<n>/config.json
    <runs root>/<experiment id>/attempt-<n>/checkpoints/step_000050.pt

The runs root is `--runs-dir`, else env OPTICAL_RUNS, else `<name>.runs/` beside an SQLite database
`<name>.db` (one per database: ids are unique only within one), or `./runs` for a database
server. Put it on a shared filesystem when several boxes share one queue, so a run reclaimed on
another box finds its checkpoint.

One folder per attempt fences the files the way `RunLease` fences the rows: a process writes and
prunes only inside its own attempt's folder, so a paused process whose run was reclaimed can never
replace or delete its successor's checkpoints (engine/checkpoint.py).

`run.json` names the experiment (id and creation time). Ids are unique only within one database,
and two databases pointed at the same runs root (two PostgreSQL databases from one working folder,
say) would otherwise resume, and clean up, each other's checkpoints.

Checkpoints are only for resuming: a run that is done, failed or cancelled never resumes (a retry
is a fresh experiment), so its checkpoints are deleted (`remove_checkpoints`, `sweep_finished`);
a removed experiment loses its whole folder (`remove_run_dirs`). Logs of finished runs stay.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from engine.errors import ConfigError
from engine.files import read_json_object
from engine.store import Experiment, Store, is_url, sqlite_path

MARKER = "run.json"
CHECKPOINTS = "checkpoints"
_ATTEMPT = re.compile(r"^attempt-(\d+)$")
#: Same experiment when the recorded creation times agree this closely (a float through JSON and
#: a database round trip).
_SAME_TIME_S = 1e-3


def runs_root(db_location: str, setting: str | Path | None = None) -> Path:
    chosen = setting or os.environ.get("OPTICAL_RUNS")
    if chosen:
        return Path(chosen).expanduser().resolve()
    path = sqlite_path(db_location)
    if path is None:
        return Path.cwd() / "runs"
    # One folder per database (`experiments.db` -> `experiments.runs/`, like its worker logs): two
    # databases in one folder sharing `runs/` collide on ids, and the second one's first run fails.
    path = path.resolve()
    return path.with_name(f"{path.stem}.runs")


def runs_root_is_default(db_location: str, setting: str | Path | None = None) -> bool:
    """True when a database server's runs go to `./runs` only because nothing else was said: other
    boxes cannot resume from there unless it is a shared filesystem."""
    return (is_url(db_location) and sqlite_path(db_location) is None
            and not (setting or os.environ.get("OPTICAL_RUNS")))


def check_runs_root(root: Path) -> Path:
    """Refuse a runs root that cannot hold folders (bad input fails once, not in every run)."""
    root = Path(root)
    existing = next((p for p in (root, *root.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ConfigError(f"--runs-dir {root}: {existing} is not a folder")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--runs-dir {root}: {existing} is not writable")
    return root


def run_dir(root: Path, exp_id: int) -> Path:
    return Path(root) / str(exp_id)


def attempt_dir(run_folder: Path, attempt: int) -> Path:
    return Path(run_folder) / f"attempt-{attempt}"


def attempts_in(run_folder: Path) -> list[int]:
    """Attempt numbers with a folder, ascending."""
    try:
        names = [p.name for p in Path(run_folder).iterdir() if p.is_dir()]
    except OSError:
        return []
    return sorted(int(m.group(1)) for n in names if (m := _ATTEMPT.match(n)))


def checkpoint_dirs(run_folder: Path) -> list[Path]:
    """Every checkpoint folder of a run (all attempts, and the single-folder layout of older
    versions), existing ones only."""
    found = [attempt_dir(run_folder, n) / CHECKPOINTS for n in attempts_in(run_folder)]
    found.append(Path(run_folder) / CHECKPOINTS)
    return [p for p in found if p.is_dir()]


def remove_checkpoints(run_folder: Path) -> int:
    """Delete every checkpoint of a finished run (logs stay); returns the folders removed."""
    dirs = checkpoint_dirs(run_folder)
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)
    return len(dirs)


# --------------------------------------------------------------------------- ownership


def _marker(exp: Experiment) -> dict[str, object]:
    return {"experiment_id": exp.id, "created_at": exp.created_at, "name": exp.name}


def _read_marker(run_folder: Path) -> dict[str, object] | None:
    return read_json_object(Path(run_folder) / MARKER)


def owned_by(run_folder: Path, exp: Experiment) -> bool:
    """The folder belongs to this experiment (a folder without a marker, from an older version,
    counts as its own)."""
    data = _read_marker(run_folder)
    if data is None:
        return True
    created = data.get("created_at")
    return (data.get("experiment_id") == exp.id and isinstance(created, int | float)
            and abs(float(created) - exp.created_at) <= _SAME_TIME_S)


def claim_run_dir(root: Path, exp: Experiment) -> Path:
    """Create (or check) the experiment's folder; raises ConfigError when it belongs to an
    experiment of another database sharing this runs root."""
    folder = run_dir(root, exp.id)
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / MARKER).exists():
        if not owned_by(folder, exp):
            other = _read_marker(folder) or {}
            raise ConfigError(
                f"run folder {folder} belongs to another experiment #{exp.id} "
                f"({other.get('name')!r}, created at {other.get('created_at')}): another database "
                "uses the "
                "same runs dir; give each database its own --runs-dir (or OPTICAL_RUNS)")
        return folder
    tmp = folder / f".{MARKER}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(_marker(exp), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, folder / MARKER)
    return folder


# --------------------------------------------------------------------------- cleanup


def _has_checkpoint_files(run_folder: Path) -> bool:
    for d in checkpoint_dirs(run_folder):
        try:
            if any(d.iterdir()):
                return True
        except OSError:
            continue
    return False


def sweep_finished(store: Store, root: Path) -> list[int]:
    """Delete the checkpoints of this database's done, failed and cancelled runs under `root`
    (a run cancelled while queued, or failed by the reaper, had no process to do it). Returns the
    experiment ids cleaned. Folders of experiments the database does not know are left alone:
    they may belong to another database sharing the root."""
    try:
        names = [p.name for p in Path(root).iterdir()]
    except OSError:
        return []
    ids = [int(n) for n in names if n.isdigit() and _has_checkpoint_files(Path(root) / n)]
    if not ids:
        return []
    cleaned = []
    for exp in store.list_experiments(ids=ids):
        folder = run_dir(root, exp.id)
        if exp.status.terminal and owned_by(folder, exp):
            remove_checkpoints(folder)
            cleaned.append(exp.id)
    return cleaned


def folders_of(exp: Experiment, root: Path) -> list[Path]:
    """Where an experiment's files may be: the folder its last attempt recorded in its provenance
    (the worker's --runs-dir) and its folder under `root`."""
    found = []
    recorded = exp.provenance.get("run_dir") if isinstance(exp.provenance, dict) else None
    if isinstance(recorded, str) and recorded:
        found.append(Path(recorded))
    found.append(run_dir(root, exp.id))
    return list(dict.fromkeys(found))


def remove_run_dirs(exps: Iterable[Experiment], root: Path) -> list[Path]:
    """Delete the folders of experiments just removed from the database (`queue rm`, the
    dashboard's delete): checkpoints, logs and all. A folder whose marker names another
    experiment is kept. Returns the folders deleted."""
    removed = []
    for exp in exps:
        for folder in folders_of(exp, root):
            if folder.is_dir() and folder.name == str(exp.id) and owned_by(folder, exp):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
    return removed

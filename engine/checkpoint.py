"""Atomic, fenced training checkpoints with a fallback: `Checkpoints`.

A checkpoint holds everything a resumed run needs to continue bit-for-bit: the student's
trainable weights (frozen tensors such as a frozen word-embedding matrix are reloaded from the
model source instead, which keeps files small), optimizer and scheduler state, sampler states,
every RNG state and the step.

Writing. A file is written to a temporary name, fsynced and `os.replace`d, so a crash mid-write
never leaves a truncated "latest" checkpoint. For a worker run, `guard` (a lease check: a fenced
flush of the run's store reporter) runs right before the replace and the pruning that follows, and
a process writes and prunes only inside its own attempt's folder (engine/run_dirs.py): a paused
process whose run was reclaimed raises `LeaseLost` there and touches nothing its successor reads.

Reading. The newest checkpoint of the newest attempt is tried first, then older ones (this
attempt's, then earlier attempts'). A file that cannot be loaded (truncated, empty, corrupt) is
skipped with a warning that names it; with none usable the run starts from step 0 and says so.
Worker runs keep the previous checkpoint beside the latest for that fallback (`keep=2`).

Leftovers. Temporary files of interrupted writes (`.step_000050.pt.tmp-PID`, full size) are
removed when an attempt starts (`remove_temp_files`): whoever wrote them is dead or fenced out.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.run_dirs import CHECKPOINTS, attempt_dir, attempts_in

_NAME = re.compile(r"^step_(\d+)\.pt$")
_TEMP = re.compile(r"^\.step_\d+\.pt\.tmp-\d+$")
#: Keys every checkpoint written by engine/train.py has; a file without them is not usable.
_REQUIRED = ("step", "model", "optimizer")


def checkpoint_path(ckpt_dir: Path, step: int) -> Path:
    return ckpt_dir / f"step_{step:06d}.pt"


def list_checkpoints(ckpt_dir: Path) -> list[tuple[int, Path]]:
    if not ckpt_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """State dict minus frozen parameters (they equal the source checkpoint's)."""
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k not in frozen}


def load_checkpoint(path: Path) -> dict[str, Any]:
    # Our own file (numpy RNG state, optimizer state): not loadable with weights_only.
    return torch.load(path, map_location="cpu", weights_only=False)


def _fsync_dir(folder: Path) -> None:
    # The rename itself must survive a power cut, not only the file's bytes.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class Checkpoints:
    """One run's checkpoints: where this process writes (`own`) and, newest first, the folders of
    earlier attempts it may resume from."""

    def __init__(self, own: Path, earlier: Sequence[Path] = (), *, keep: int = 1,
                 guard: Callable[[], None] | None = None) -> None:
        self.own = Path(own)
        self.earlier = [Path(p) for p in earlier]
        self.keep = max(1, keep)
        self.guard = guard or (lambda: None)

    @classmethod
    def for_attempt(cls, run_folder: Path, attempt: int,
                    guard: Callable[[], None] | None = None) -> Checkpoints:
        """A worker attempt: writes in `attempt-<n>/checkpoints`, resumes from attempts ≤ n."""
        earlier = [attempt_dir(run_folder, n) / CHECKPOINTS
                   for n in reversed(attempts_in(run_folder)) if n < attempt]
        legacy = Path(run_folder) / CHECKPOINTS  # the single-folder layout of older versions
        return cls(attempt_dir(run_folder, attempt) / CHECKPOINTS, [*earlier, legacy], keep=2,
                   guard=guard)

    # ----------------------------------------------------------------- reading

    def candidates(self) -> list[Path]:
        """Checkpoint files to try, best first: this attempt's newest, ..., the oldest attempt's
        oldest."""
        out: list[Path] = []
        for folder in (self.own, *self.earlier):
            out += [p for _, p in reversed(list_checkpoints(folder))]
        return out

    def load_latest(self, warn: Callable[[str], None]) -> tuple[dict[str, Any], Path] | None:
        """The newest checkpoint that loads, with its path; `warn` hears about each one skipped."""
        tried = 0
        for path in self.candidates():
            tried += 1
            try:
                state = load_checkpoint(path)
                if not isinstance(state, dict) or any(k not in state for k in _REQUIRED):
                    raise ValueError("not a training checkpoint (keys missing)")
            except FileNotFoundError:
                continue  # removed meanwhile (pruned by a run that finished elsewhere)
            except Exception as exc:  # noqa: BLE001 - any unreadable file: fall back to an older one
                size = path.stat().st_size if path.exists() else 0
                warn(f"checkpoint {path} is unusable ({type(exc).__name__}: {str(exc)[:200]}; "
                     f"{size} bytes); "
                     "falling back to an older checkpoint")
                continue
            return state, path
        if tried:
            warn(f"none of the {tried} checkpoint file(s) could be loaded; training restarts from "
                 "step 0")
        return None

    # ----------------------------------------------------------------- writing

    def save(self, step: int, state: dict[str, Any]) -> Path:
        """Write atomically (after a lease check), then prune; returns the new file. Raises
        OSError when the disk refuses the write (nothing is left behind), LeaseLost from the
        guard."""
        self.own.mkdir(parents=True, exist_ok=True)
        final = checkpoint_path(self.own, step)
        tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as fh:
                torch.save({**state, "step": step}, fh)
                fh.flush()
                os.fsync(fh.fileno())
            self.guard()  # still ours? A reclaimed run must not replace or prune anything
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                tmp.unlink()
        _fsync_dir(self.own)
        mine = list_checkpoints(self.own)
        for _, path in mine[:-self.keep]:
            path.unlink(missing_ok=True)
        if len(mine) >= self.keep:
            # This attempt now has its own fallback: earlier attempts' files are no longer needed.
            for folder in self.earlier:
                for _, path in list_checkpoints(folder):
                    path.unlink(missing_ok=True)
        return final

    def remove_temp_files(self) -> list[Path]:
        """Delete leftovers of interrupted writes in every folder this run reads or writes."""
        removed = []
        for folder in (self.own, *self.earlier):
            if not folder.is_dir():
                continue
            for p in folder.iterdir():
                if _TEMP.match(p.name):
                    p.unlink(missing_ok=True)
                    removed.append(p)
        return removed

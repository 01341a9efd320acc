"""Atomic training checkpoints: `run_dir/checkpoints/step_000050.pt`, only the latest kept.

A checkpoint holds everything a resumed run needs to continue bit-for-bit: the student's
trainable weights (frozen tensors such as a frozen word-embedding matrix are reloaded from the
model source instead, which keeps files small), optimizer and scheduler state, sampler states,
every RNG state and the step. Files are written to a temporary name and `os.replace`d, so a
crash mid-write never leaves a truncated "latest" checkpoint.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

_NAME = re.compile(r"^step_(\d+)\.pt$")


def checkpoint_path(ckpt_dir: Path, step: int) -> Path:
    return ckpt_dir / f"step_{step:06d}.pt"


def list_checkpoints(ckpt_dir: Path) -> list[tuple[int, Path]]:
    if not ckpt_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def latest_checkpoint(ckpt_dir: Path) -> Path | None:
    found = list_checkpoints(ckpt_dir)
    return found[-1][1] if found else None


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


def save_checkpoint(ckpt_dir: Path, step: int, state: dict[str, Any]) -> Path:
    """Write atomically, then delete older checkpoints; returns the new file."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    final = checkpoint_path(ckpt_dir, step)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            torch.save({**state, "step": step}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()
    for old_step, path in list_checkpoints(ckpt_dir):
        if old_step != step:
            path.unlink(missing_ok=True)
    return final


def load_checkpoint(path: Path) -> dict[str, Any]:
    # Our own file (numpy RNG state, optimizer state): not loadable with weights_only.
    return torch.load(path, map_location="cpu", weights_only=False)

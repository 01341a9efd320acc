"""Which weights are a run's result: the last step's, or those of the best dev evaluation.

`train.select = "best-dev"` offers every evaluation's dev metrics (`DEV_SELECTION_KEY`: dev
macro Mul mAP, engine/metric_keys.py) to a `ModelSelection`; a strictly better value keeps a CPU
copy of the student's trainable weights (ties keep the earlier step). Frozen tensors never change,
so they need no copy. The copy travels inside every training checkpoint (`state_dict`), so a
stopped or lost run resumes with its best-so-far, whatever folder its checkpoints live in. After
the last step the trainer loads the selected weights back before the final full evaluation and
the model export, and reports `TrainKey.SELECTED_STEP`.

`"last"` keeps nothing: the weights after the last step are the result.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from engine.checkpoint import trainable_state
from engine.metric_keys import DEV_SELECTION_KEY


class ModelSelection:
    def __init__(self, mode: str, key: str = DEV_SELECTION_KEY) -> None:
        self.mode = mode
        self.key = key
        self.step: int | None = None  # the best step so far (best-dev)
        self.value = -math.inf
        self._weights: dict[str, torch.Tensor] | None = None

    @property
    def keeps_best(self) -> bool:
        return self.mode == "best-dev"

    def offer(self, step: int, values: Mapping[str, float], model: torch.nn.Module) -> bool:
        """Consider one evaluation; True when it is the new best (its weights are now kept)."""
        if not self.keeps_best:
            return False
        value = values.get(self.key)
        if value is None or not math.isfinite(value) or (self.step is not None
                                                         and value <= self.value):
            return False
        self.step, self.value = step, float(value)
        self._weights = {k: v.detach().to("cpu", copy=True)
                         for k, v in trainable_state(model).items()}
        return True

    def selected_step(self, last_step: int) -> int:
        return self.step if self.keeps_best and self.step is not None else last_step

    def restore(self, model: torch.nn.Module) -> bool:
        """Load the kept weights into `model` (the frozen ones are already right); False when
        the model already holds the selection (mode "last", or nothing kept)."""
        if not self.keeps_best or self._weights is None:
            return False
        model.load_state_dict(self._weights, strict=False)
        return True

    # ------------------------------------------------------------------ resume

    def state_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "key": self.key, "step": self.step, "value": self.value,
                "weights": self._weights}

    def load_state_dict(self, state: Mapping[str, Any] | None) -> None:
        """Restore from a checkpoint (None: a checkpoint written before selection existed, or by
        another mode: start over, and the next evaluation becomes the best so far)."""
        if not state or state.get("mode") != self.mode or state.get("key") != self.key:
            return
        self.step = state["step"]
        self.value = float(state["value"])
        self._weights = state["weights"]

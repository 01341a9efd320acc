"""Runs into the trackers researchers already use: TensorBoard, MLflow, W&B (`optical export-runs`).

Each writer takes the same `RunRecord`s, read once from the store: the run's row (config, ratio,
seed, status, commit) and every metric point it stored. Every point goes out with its step and
its wall time, under its metric key (engine/metric_keys.py: split/setting/language/metric, e.g.
`eval/mul/hi/map`), so each tracker groups scalars by split, setting and language; the final value
of each evaluation key (the value at its last step) is what the hparams / summary views show.
MLflow allows no `@` or `>` in a key and TensorBoard rewrites them, so every tracker gets the same
spelling from `tracker_key`: `r@10` is `r_at_10` and the language pair `ar->en` is `ar-to-en`.

The writers are optional extras, none of them imports torch:
    tensorboard_files.py  `pip install 'optical-tui[tensorboard]'`  tensorboardX event files
    mlflow_store.py       `pip install 'optical-tui[mlflow]'`       an MLflow SQLite store
    wandb_offline.py      `pip install 'optical-tui[wandb]'`        offline runs for `wandb sync`
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.errors import ConfigError
from engine.metric_keys import parse_key
from engine.store import Experiment, MetricPoint, Store
from engine.stored_config import flat_config


def tracker_key(key: str) -> str:
    """A metric key as every tracker accepts it (the one mapping; see the module doc)."""
    return key.replace("@", "_at_").replace("->", "-to-")


@dataclass(frozen=True)
class RunRecord:
    experiment: Experiment
    points: tuple[MetricPoint, ...]  # oldest first

    @property
    def label(self) -> str:
        """`<id>-<ratio>-s<seed>`: a folder and run name that sorts and says which run it is."""
        e = self.experiment
        return f"{e.id}-{e.ratio.replace(':', 'to')}-s{e.seed}"

    def final_metrics(self) -> dict[str, float]:
        """Each evaluation key's value at its last step (training losses are curves, not results),
        under its tracker_key."""
        out: dict[str, tuple[int, float]] = {}
        for m in self.points:
            parsed = parse_key(m.key)
            if parsed is None or parsed.split == "train":
                continue
            key = tracker_key(m.key)
            if key not in out or m.step >= out[key][0]:
                out[key] = (m.step, m.value)
        return {k: v for k, (_s, v) in sorted(out.items())}

    def params(self) -> dict[str, str | int | float | bool]:
        """The frozen config flattened to `section.key`, plus what names the run's cell."""
        e = self.experiment
        out: dict[str, str | int | float | bool] = {"ratio": e.ratio, "seed": e.seed}
        for key, value in sorted(flat_config(e.config).items()):
            out[key] = _scalar(value)
        return out

    def tags(self) -> dict[str, str]:
        e = self.experiment
        return {"optical.id": str(e.id), "optical.sweep": e.name, "optical.status": str(e.status),
                "optical.code_version": e.code_version or "unknown",
                **{f"optical.factor.{k}": str(v) for k, v in sorted(e.factors.items())}}


def _scalar(value: Any) -> str | int | float | bool:
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return str(value)


def load_runs(store: Store, experiments: Sequence[Experiment]) -> list[RunRecord]:
    return [RunRecord(e, tuple(store.metrics(e.id))) for e in experiments]


def safe_name(text: str) -> str:
    """A sweep name as one path component (names are free text)."""
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", text).strip("._") or "sweep"


def need(module: str, extra: str) -> None:
    """Bad input, not a traceback, when an optional writer is not installed."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"this export needs {module}: pip install 'optical-tui[{extra}]'")

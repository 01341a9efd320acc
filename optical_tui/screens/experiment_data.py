"""One experiment's metric history in memory, and the views the experiment screen draws from it.

Series are `key -> {step: value}`: points are unique per (key, step) in the store, so merging
the on-demand history load with rows that arrived meanwhile is idempotent in any order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.config import MLQA_LANGS, SETTINGS
from engine.store import Metric

SETTING_NAMES = {"mo": "Mo", "cr": "Cr", "mul": "Mul"}
METRIC_CHOICES = ("map", "r@1", "r@10", "mrr@10", "ndcg@10", "rank_distance")
LOSS_KEYS = ("train/loss", "train/loss_task", "train/loss_ot")
LR_KEY = "train/lr"


def metric_allowed(setting: str, metric: str) -> bool:
    # Rank distance (language bias) is only defined for the multilingual pool.
    return metric != "rank_distance" or setting == "mul"


def next_metric(setting: str, metric: str) -> str:
    i = METRIC_CHOICES.index(metric) if metric in METRIC_CHOICES else -1
    for step in range(1, len(METRIC_CHOICES) + 1):
        candidate = METRIC_CHOICES[(i + step) % len(METRIC_CHOICES)]
        if metric_allowed(setting, candidate):
            return candidate
    return "map"


@dataclass
class History:
    series: dict[str, dict[int, float]] = field(default_factory=dict)

    def add(self, metrics: Iterable[Metric]) -> bool:
        changed = False
        for m in metrics:
            per_key = self.series.setdefault(m.key, {})
            if per_key.get(m.step) != m.value:
                per_key[m.step] = m.value
                changed = True
        return changed

    def get(self, key: str) -> dict[int, float]:
        return self.series.get(key, {})

    def last(self, key: str) -> float | None:
        s = self.series.get(key)
        return s[max(s)] if s else None


def languages(config: dict[str, Any]) -> tuple[str, ...]:
    return tuple(config.get("eval", {}).get("langs") or MLQA_LANGS)


def train_langs(config: dict[str, Any]) -> tuple[str, ...]:
    return tuple(config.get("data", {}).get("train_langs") or ())


def groups(config: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    ev = config.get("eval", {})
    return {"high": tuple(ev.get("high", ())), "low": tuple(ev.get("low", ()))}


def lang_label(lang: str, config: dict[str, Any]) -> str:
    """Zero-shot languages (never trained on) carry a star everywhere."""
    return f"{lang}*" if lang not in train_langs(config) else lang


def curve_keys(config: dict[str, Any], setting: str, metric: str, view: str) -> list[tuple[str, str]]:
    """(label, key) pairs of the quick-eval curves for the chosen setting, metric and view."""
    if view == "groups":
        g = groups(config)
        return [(f"{name} ({' '.join(lang_label(x, config) for x in g[name])})",
                 f"eval/group/{name}/{setting}/{metric}") for name in ("high", "low")] + [
            ("macro", f"eval/macro/{setting}/{metric}")]
    return [(lang_label(lang, config), f"eval/{setting}/{lang}/{metric}") for lang in languages(config)]


@dataclass(frozen=True)
class EvalTable:
    source: str            # "full benchmark" or "quick eval (subset)"
    step: int | None
    rows: list[tuple[str, list[float | None]]]
    columns: tuple[str, ...]


def eval_table(history: History, config: dict[str, Any], metric: str,
               settings: Sequence[str] = SETTINGS) -> EvalTable:
    """Query language × setting at the latest full evaluation, else at the latest quick eval."""
    prefix, source = "full", "full benchmark"
    if not any(k.startswith("full/") for k in history.series):
        prefix, source = "eval", "quick eval (subset)"
    probe = [k for k in history.series if k.startswith(f"{prefix}/macro/")]
    steps = {s for k in probe for s in history.get(k)}
    step = max(steps) if steps else None

    def at(key: str) -> float | None:
        if step is None:
            return None
        return history.get(key).get(step)

    rows: list[tuple[str, list[float | None]]] = []
    for lang in languages(config):
        rows.append((lang_label(lang, config), [at(f"{prefix}/{s}/{lang}/{metric}") for s in settings]))
    for name, members in groups(config).items():
        if members:
            rows.append((f"group {name}", [at(f"{prefix}/group/{name}/{s}/{metric}") for s in settings]))
    rows.append(("macro", [at(f"{prefix}/macro/{s}/{metric}") for s in settings]))
    if "mul" in settings:
        columns = (*[SETTING_NAMES.get(s, s) for s in settings], "rank dist")
        for i, (label, values) in enumerate(rows):
            if label.startswith("group "):
                key = f"{prefix}/group/{label.split()[1]}/mul/rank_distance"
            elif label == "macro":
                key = f"{prefix}/macro/mul/rank_distance"
            else:
                key = f"{prefix}/mul/{label.rstrip('*')}/rank_distance"
            rows[i] = (label, [*values, at(key)])
    else:
        columns = tuple(SETTING_NAMES.get(s, s) for s in settings)
    return EvalTable(source, step, rows, columns)


def config_lines(config: dict[str, Any]) -> list[str]:
    """The frozen config as TOML-like text (sections, then keys), for reading not parsing."""
    out: list[str] = []
    for section in sorted(config):
        out.append(f"[{section}]")
        values = config[section]
        if isinstance(values, dict):
            for key in sorted(values):
                out.append(f"{key} = {_toml(values[key])}")
        out.append("")
    return out


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)

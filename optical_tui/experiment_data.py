"""One experiment's metric history in memory, and the views the experiment screen draws from it.

Series are `key -> {step: value}`: points are unique per (key, step) in the store, so merging
the on-demand history load with rows that arrived meanwhile is idempotent in any order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from engine.metric_keys import (
    ALL_METRICS,
    MACRO,
    LangSettingTable,
    MetricName,
    Split,
    group_unit,
    lang_setting_table,
    lang_unit,
    metric_allowed,
    metric_key,
    split_prefix,
)
from engine.store import MetricPoint
from engine.stored_config import config_value, groups, languages, zero_shot


def next_metric(setting: str, metric: str) -> str:
    """The metric after `metric` that exists in `setting` (rank distance: Mul only)."""
    i = ALL_METRICS.index(MetricName(metric)) if metric in set(ALL_METRICS) else -1
    for step in range(1, len(ALL_METRICS) + 1):
        candidate = ALL_METRICS[(i + step) % len(ALL_METRICS)]
        if metric_allowed(setting, candidate):
            return candidate
    return MetricName.MAP


@dataclass
class History:
    series: dict[str, dict[int, float]] = field(default_factory=dict)

    def add(self, metrics: Iterable[MetricPoint]) -> bool:
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


def lang_label(lang: str, config: dict[str, Any]) -> str:
    """Zero-shot languages (never trained on) carry a star everywhere."""
    return f"{lang}*" if zero_shot((lang,), [config]) else lang


def curve_keys(config: dict[str, Any], setting: str, metric: str,
               view: str) -> list[tuple[str, str]]:
    """(label, key) pairs of the quick-eval curves for the chosen setting, metric and view."""
    if view == "groups":
        g = groups(config)
        return [(f"{name} ({' '.join(lang_label(x, config) for x in g[name])})",
                 metric_key(Split.QUICK, setting, group_unit(name), metric)) for name in g] + [
            ("macro", metric_key(Split.QUICK, setting, MACRO, metric))]
    return [(lang_label(lang, config), metric_key(Split.QUICK, setting, lang_unit(lang), metric))
            for lang in languages(config)]


@dataclass(frozen=True)
class EvalTable:
    source: str            # "full benchmark" or "quick eval (subset)"
    step: int | None
    table: LangSettingTable


def eval_table(history: History, config: dict[str, Any], metric: str) -> EvalTable:
    """Query language × setting at the latest full evaluation, else at the latest quick eval."""
    split, source = Split.FULL, "full benchmark"
    if not any(k.startswith(split_prefix(Split.FULL)) for k in history.series):
        split, source = Split.QUICK, "quick eval (subset)"
    probe = [k for k in history.series if k.startswith(split_prefix(split))]
    steps = {s for k in probe for s in history.get(k)}
    step = max(steps) if steps else None

    def at(key: str) -> float | None:
        return None if step is None else history.get(key).get(step)

    settings = list(config_value(config, "eval.settings"))
    langs = languages(config)
    table = lang_setting_table(at, split, langs, settings, groups(config), metric,
                               zero_shot=list(zero_shot(langs, [config])))
    return EvalTable(source, step, table)


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

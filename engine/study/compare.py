"""Comparing a few runs side by side (`optical compare`, the dashboard's compare screen).

What differs in their frozen configs, their final numbers with deltas from the first run, and
the per-language table. Pure functions over experiments and their recorded series (the same
`key -> step -> value` shape the study reads), so the CLI and the screen show the same numbers.

A run's final value follows the study's rule (engine/study/core.py): the full benchmark when
every compared run has it, else each run's last quick-subset point, or the point at the step
`train.select` chose when the run recorded it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.errors import ConfigError
from engine.metric_keys import (
    LOSS_KEYS,
    MACRO,
    SETTINGS,
    MetricName,
    Setting,
    Split,
    TrainKey,
    Unit,
    group_unit,
    lang_unit,
    metric_allowed,
    metric_key,
    split_prefix,
)
from engine.store import Experiment, Store
from engine.stored_config import config_value, flat_config, groups, languages, zero_shot
from engine.study.core import check_choices
from engine.study.runs import RD, SELECTED_STEP_KEY, RunSeries
from engine.sweep import level_text

#: The most runs one comparison shows: columns beyond that do not fit a terminal or a plot legend.
MAX_RUNS = 8


@dataclass(frozen=True)
class ValueRow:
    """One number across the runs: its values and each run's delta from the first run."""

    label: str  # "Mul mAP macro", "ar*"
    key: str  # the metric key the values were read from
    values: tuple[float | None, ...]
    deltas: tuple[float | None, ...]  # values[i] - values[0]; None where either is missing


@dataclass(frozen=True)
class Comparison:
    runs: tuple[Experiment, ...]
    metric: str
    setting: str
    source: str  # "full" | "eval"
    differing: Mapping[
        str, tuple[str, ...]
    ]  # config key -> its value per run (only keys that differ)
    same: int  # how many config keys are equal in every run
    final: tuple[ValueRow, ...]
    languages: tuple[ValueRow, ...]
    steps: tuple[int | None, ...]  # the step each run's values are from (None: no values)

    def label(self, i: int) -> str:
        e = self.runs[i]
        return f"#{e.id} {e.name} {e.ratio} s{e.seed}"


def config_diff(runs: Sequence[Experiment]) -> tuple[dict[str, tuple[str, ...]], int]:
    """The config keys whose values differ between the runs (a key a run predates counts as its
    default), each with its value per run; and how many keys are the same everywhere."""
    keys = sorted({k for e in runs for k in flat_config(e.config)})
    differing: dict[str, tuple[str, ...]] = {}
    for k in keys:
        texts = tuple(level_text(config_value(e.config, k)) for e in runs)
        if len(set(texts)) > 1:
            differing[k] = texts
    return differing, len(keys) - len(differing)


def _units(config: Mapping[str, Any]) -> tuple[list[Unit], tuple[str, ...]]:
    """The group units the config names (a group without languages has none), then macro."""
    shown = [group_unit(g) for g, langs in groups(config).items() if langs]
    return [*shown, MACRO], languages(config)


def views(config: Mapping[str, Any]) -> list[tuple[str, Unit]]:
    """What the compare screen's `g` cycles through: the macro mean, each resource group that
    has languages, then each query language."""
    shown, langs = _units(config)
    return [("macro", MACRO), *((f"{u.name} group", u) for u in shown if u != MACRO),
            *((f"language {x}", lang_unit(x)) for x in langs)]


def compare_keys(runs: Sequence[Experiment], metric: str, setting: str) -> list[str]:
    """Every key `compare` may read for these runs (what a reader has to load)."""
    units: set[Unit] = {MACRO}
    for e in runs:
        groups, langs = _units(e.config)
        units |= set(groups) | {lang_unit(x) for x in langs}
    keys = [SELECTED_STEP_KEY, *LOSS_KEYS]
    for split in (Split.FULL, Split.QUICK):
        for u in sorted(units):
            keys += [
                metric_key(split, s, u, m)
                for s in SETTINGS
                for m in {metric, MetricName.MAP, RD}
                if metric_allowed(s, m)
            ]
    return sorted(set(keys))


def _final(series: RunSeries, key: str, at: int | None) -> tuple[int, float] | None:
    points = series.get(key)
    if not points:
        return None
    step = at if at is not None else max(points)
    return (step, points[step]) if step in points else None


def _selected(e: Experiment, series: RunSeries, source: str) -> int | None:
    """The step whose quick-eval point counts (train.select chose it), or None: the last."""
    if source != Split.QUICK or config_value(e.config, "train.select") in (None, "last"):
        return None
    chosen = series.get(SELECTED_STEP_KEY)
    return int(chosen[max(chosen)]) if chosen else None


def _row(label: str, key: str, raw: list[float | None]) -> ValueRow:
    values = [v if v is not None and math.isfinite(v) else None for v in raw]  # JSON has no NaN
    first = values[0]
    deltas = tuple(None if v is None or first is None else v - first for v in values)
    return ValueRow(label, key, tuple(values), deltas)


def compare(
    runs: Sequence[Experiment],
    series: Mapping[int, RunSeries],
    *,
    metric: str = MetricName.MAP,
    setting: str = Setting.MUL,
) -> Comparison:
    """The comparison of these runs, in the order given (the first is the reference)."""
    check_choices(metric, setting, "auto", "1:1")
    if len(runs) < 2:
        raise ConfigError("compare needs at least two experiments")
    if len(runs) > MAX_RUNS:
        raise ConfigError(f"compare shows at most {MAX_RUNS} experiments at once; got {len(runs)}")
    empty: RunSeries = {}
    headline = metric_key(Split.FULL, setting, MACRO, metric)
    prefixes = (split_prefix(Split.FULL), split_prefix(Split.QUICK))
    scored = [e for e in runs if any(k.startswith(prefixes) for k in series.get(e.id, empty))]
    source = (
        Split.FULL
        if scored and all(series.get(e.id, empty).get(headline) for e in scored)
        else Split.QUICK
    )
    at = [_selected(e, series.get(e.id, empty), source) for e in runs]
    steps: list[int | None] = [None] * len(runs)

    def row(label: str, key: str) -> ValueRow:
        values: list[float | None] = []
        for i, e in enumerate(runs):
            found = _final(series.get(e.id, empty), key, None if key in LOSS_KEYS else at[i])
            values.append(found[1] if found else None)
            if found and key not in LOSS_KEYS:
                steps[i] = max(steps[i] or 0, found[0])
        return _row(label, key, values)

    groups, langs = _units(runs[0].config)
    final: list[ValueRow] = []
    for s in SETTINGS:
        if metric_allowed(s, metric):
            name = f"{Setting(s).label} {MetricName(metric).label}"
            final += [
                row(f"{name} {u.name if u != MACRO else 'macro'}", metric_key(source, s, u, metric))
                for u in groups
            ]
    final.append(row("Mul rank dist. macro", metric_key(source, Setting.MUL, MACRO, RD)))
    final.append(row("final training loss", TrainKey.LOSS))
    unseen = zero_shot(langs, [e.config for e in runs])
    per_language = [
        row(
            lang + ("*" if lang in unseen else ""),
            metric_key(source, setting, lang_unit(lang), metric),
        )
        for lang in langs
    ]
    final = [r for r in final if any(v is not None for v in r.values)]
    differing, same = config_diff(runs)
    return Comparison(
        tuple(runs),
        metric,
        setting,
        source,
        differing,
        same,
        tuple(final),
        tuple(r for r in per_language if any(v is not None for v in r.values)),
        tuple(steps),
    )


def load_comparison(
    store: Store, ids: Sequence[int], *, metric: str = MetricName.MAP, setting: str = Setting.MUL
) -> Comparison:
    """`optical compare`: read the runs (in the order given) and their points, then compare."""
    if len(set(ids)) != len(ids):
        raise ConfigError("an experiment id is given twice")
    runs = [store.get(i) for i in ids]
    keys = compare_keys(runs, metric, setting)
    series: dict[int, dict[str, dict[int, float]]] = {}
    for e in runs:
        per_key: dict[str, dict[int, float]] = {}
        for m in store.metrics(e.id, keys=keys):
            per_key.setdefault(m.key, {})[m.step] = m.value
        series[e.id] = per_key
    return compare(runs, series, metric=metric, setting=setting)


def to_dict(c: Comparison) -> dict[str, object]:
    def rows(table: Sequence[ValueRow]) -> list[dict[str, object]]:
        return [
            {"label": r.label, "key": r.key, "values": list(r.values), "deltas": list(r.deltas)}
            for r in table
        ]

    return {
        "metric": c.metric,
        "setting": c.setting,
        "source": c.source,
        "reference": c.runs[0].id,
        "runs": [
            {
                "id": e.id,
                "name": e.name,
                "ratio": e.ratio,
                "seed": e.seed,
                "status": e.status.value,
                "tags": list(e.tags),
                "note": e.note,
                "step": c.steps[i],
            }
            for i, e in enumerate(c.runs)
        ],
        "config_diff": {k: list(v) for k, v in c.differing.items()},
        "config_same": c.same,
        "final": rows(c.final),
        "languages": rows(c.languages),
    }


def to_json(c: Comparison) -> str:
    return json.dumps(to_dict(c), indent=2, allow_nan=False)

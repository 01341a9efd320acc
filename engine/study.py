"""The ratio study: statistics over seeds, read from the store (no SQL here, no rendering).

For one sweep (or a list of experiment ids) and one metric × setting, per ratio and per unit
(resource group, macro mean, query language): mean, sample standard deviation and a 95%
Student-t interval over seeds; the paired difference of every ratio from the baseline ratio
(1:1), pairing runs by seed; and the Mul rank distance (language bias). Only `done` runs count.
Values come from the full benchmark (`full/…`) when every run has it, else from each run's last
quick-subset evaluation (`eval/…`) — the report says which (`Report.source`, `Report.notes`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from engine.config import parse_ratio, ratio_sort_key
from engine.errors import ConfigError, ExperimentNotFound
from engine.metric_keys import (
    MACRO,
    RANKING_METRICS,
    SETTINGS,
    SIZES,
    MetricName,
    Setting,
    Split,
    Unit,
    group_unit,
    lang_unit,
    metric_key,
    size_key,
)
from engine.statuses import Status
from engine.store import Experiment, Store


class Source(StrEnum):
    """Which evaluation a report reads: the full benchmark when every run has it, else the last
    quick-subset point (auto), or one of them explicitly."""

    AUTO = "auto"
    FULL = Split.FULL.value
    QUICK = Split.QUICK.value


RD = MetricName.RANK_DISTANCE


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Stat:
    """Mean, sample sd (ddof=1) and 95% t-interval of n values; sd/CI are NaN when n < 2."""

    n: int
    mean: float
    sd: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class PairedDiff:
    """Mean of a − b over runs paired by seed, its 95% t-interval and paired t-test."""

    n: int
    mean: float
    sd: float
    ci_low: float
    ci_high: float
    t: float
    p_value: float
    seeds: tuple[int, ...]


def _t_quantile(df: int, level: float = 0.95) -> float:
    from scipy import stats  # lazy: only reports need it

    return float(stats.t.ppf(0.5 + level / 2, df))


def describe(values: Sequence[float], level: float = 0.95) -> Stat:
    n = len(values)
    if n == 0:
        nan = float("nan")
        return Stat(0, nan, nan, nan, nan)
    mean = math.fsum(values) / n
    if n < 2:
        nan = float("nan")
        return Stat(1, mean, nan, nan, nan)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = _t_quantile(n - 1, level) * sd / math.sqrt(n)
    return Stat(n, mean, sd, mean - half, mean + half)


def paired_difference(a: Mapping[int, float], b: Mapping[int, float], level: float = 0.95) -> PairedDiff:
    """a − b on the seeds both have. Two-sided p of the paired t-test (t = mean / (sd/√n))."""
    from scipy import stats

    seeds = tuple(sorted(set(a) & set(b)))
    diffs = [a[s] - b[s] for s in seeds]
    d = describe(diffs, level)
    t = p = float("nan")
    if d.n >= 2:
        se = d.sd / math.sqrt(d.n)
        if se > 0:
            t = d.mean / se
            p = float(2 * stats.t.sf(abs(t), d.n - 1))
        else:  # identical differences: no spread, the test is undefined unless they are all 0
            t, p = (0.0, 1.0) if d.mean == 0 else (math.copysign(math.inf, d.mean), 0.0)
    return PairedDiff(d.n, d.mean, d.sd, d.ci_low, d.ci_high, t, p, seeds)


# --------------------------------------------------------------------------- reading runs


@dataclass(frozen=True)
class RunValues:
    """One done run's values: unit -> metric value, unit -> Mul rank distance."""

    experiment_id: int
    ratio: str
    seed: int
    source: str  # "full" | "eval"
    step: int
    values: Mapping[Unit, float]
    rank_distance: Mapping[Unit, float]
    # The step-0 evaluation (the encoder before training) on the same subset; only for eval/…
    before: Mapping[Unit, float]
    before_rank: Mapping[Unit, float]


@dataclass(frozen=True)
class Report:
    selection: str
    metric: str
    setting: str
    source: str  # "full" (complete MLQA-R) | "eval" (last quick-curve evaluation)
    subset: bool  # True when the numbers come from the quick subset, not the full benchmark
    baseline: str
    ratios: tuple[str, ...]  # ordered 1:0 … 0:1
    units: tuple[Unit, ...]
    summary: Mapping[tuple[str, Unit], Stat]
    rank_distance: Mapping[tuple[str, Unit], Stat]  # empty when mul was not evaluated
    differences: Mapping[tuple[str, Unit], PairedDiff]  # ratio != baseline, a = ratio, b = baseline
    runs: tuple[RunValues, ...]
    counts: Mapping[str, Mapping[str, int]]  # ratio -> status -> experiments (all statuses)
    groups: Mapping[str, tuple[str, ...]]
    zero_shot: tuple[str, ...]
    setup: Mapping[str, str]  # what was trained and scored, for the caption
    notes: tuple[str, ...]
    before: Mapping[Unit, Stat]  # the untrained encoder (step 0), when scored on the same eval/… set
    before_rank: Mapping[Unit, Stat]


def _select(store: Store, sweep: str | None, ids: Sequence[int] | None) -> tuple[list[Experiment], str]:
    if sweep is not None and ids:
        raise ConfigError("give either --sweep NAME or experiment ids, not both")
    if ids:
        exps = store.list_experiments(ids=list(ids))
        missing = sorted(set(ids) - {e.id for e in exps})
        if missing:
            raise ExperimentNotFound(f"no experiment with id {missing[0]}")
        return exps, "experiments " + ", ".join(f"#{i}" for i in sorted(ids))
    if sweep is not None:
        exps = store.list_experiments(name=sweep)
        if not exps:
            names = sorted({e.name for e in store.list_experiments()})
            raise ExperimentNotFound(f"no sweep named {sweep!r}; sweeps: {', '.join(names) or 'none'}")
        return exps, f"sweep {sweep!r}"
    exps = store.list_experiments()
    if not exps:
        raise ExperimentNotFound("the database has no experiments; queue some with: optical queue add")
    # Sweeps with different configs must not be pooled: default to the newest one.
    latest = max(exps, key=lambda e: (e.created_at, e.id)).name
    return [e for e in exps if e.name == latest], f"sweep {latest!r} (the newest; choose with --sweep)"


def _distinct(values: Sequence[object]) -> str:
    seen: list[str] = []
    for v in values:
        text = ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
        if text not in seen:
            seen.append(text)
    return " | ".join(seen)


def _setup(runs: Sequence[Experiment], source: str, sizes: Mapping[str, float], step: str) -> dict[str, str]:
    cfgs = [e.config for e in runs]

    def col(section: str, key: str) -> str:
        return _distinct([c.get(section, {}).get(key, "?") for c in cfgs])

    if source == Split.FULL:
        scored = "full MLQA-R benchmark"
    elif not _subset(runs, source):
        scored = f"full MLQA-R benchmark (last eval/… point, step {step}; eval.subset_questions = 0)"
    else:
        scored = (f"MLQA-R quick subset ({col('eval', 'subset_questions')} questions per language, "
                  f"subset seed {col('eval', 'subset_seed')}) at step {step}")
    minutes = [(e.finished_at - e.started_at) / 60 for e in runs if e.finished_at and e.started_at]
    return {
        "model": col("model", "name"),
        "steps": col("train", "steps"),
        "batch size": col("train", "batch_size"),
        "mixing": col("train", "mixing"),
        "learning rate": col("train", "lr"),
        "OT weight": col("ot", "weight"),
        "training data": f"{col('data', 'train_source')} ({col('data', 'train_langs')})",
        "scored on": scored,
        "questions / candidates": f"{sizes.get('n_questions', float('nan')):.0f} / "
                                  f"{sizes.get('n_candidates', float('nan')):.0f}",
        "device": _distinct([e.device or "?" for e in runs]),
        "minutes per run": f"{sum(minutes) / len(minutes):.1f}" if minutes else "?",
    }


def build_report(store: Store, *, sweep: str | None = None, ids: Sequence[int] | None = None,
                 metric: str = MetricName.MAP, setting: str = Setting.MUL, source: str = Source.AUTO,
                 baseline: str = "1:1") -> Report:
    if metric not in RANKING_METRICS:
        raise ConfigError(f"--metric {metric!r}: valid metrics are {', '.join(RANKING_METRICS)}")
    if setting not in SETTINGS:
        raise ConfigError(f"--setting {setting!r}: valid settings are {', '.join(SETTINGS)}")
    if source not in set(Source):
        raise ConfigError(f"--source {source!r}: valid sources are {', '.join(Source)}")
    baseline = str(parse_ratio(baseline))
    exps, selection = _select(store, sweep, ids)
    counts: dict[str, dict[str, int]] = {}
    for e in exps:
        r = str(parse_ratio(e.ratio))
        counts.setdefault(r, {})
        counts[r][e.status] = counts[r].get(e.status, 0) + 1
    notes: list[str] = []
    # One run per (ratio, seed): a retried or re-queued duplicate would count a seed twice.
    latest: dict[tuple[str, int], Experiment] = {}
    for e in sorted((e for e in exps if e.status == Status.DONE), key=lambda e: e.id):
        k = (str(parse_ratio(e.ratio)), e.seed)
        if k in latest:
            notes.append(f"#{latest[k].id} superseded by #{e.id} (same ratio {k[0]} and seed {k[1]})")
        latest[k] = e
    done = list(latest.values())
    if not done:
        status = ", ".join(f"{s} {n}" for s, n in _total(counts).items())
        raise ExperimentNotFound(f"nothing to report yet: {selection} has no done experiments ({status})")

    first = done[0].config
    groups = {"high": tuple(first["eval"]["high"]), "low": tuple(first["eval"]["low"])}
    langs = tuple(first["eval"]["langs"])
    train_langs = sorted({lang for e in done for lang in e.config["data"]["train_langs"]})
    if any((tuple(e.config["eval"]["high"]), tuple(e.config["eval"]["low"])) != tuple(groups.values())
           for e in done):
        notes.append("runs define the resource groups differently; groups shown are those of the first run")
    zero_shot = tuple(lang for lang in langs if lang not in train_langs)
    units: tuple[Unit, ...] = (*(group_unit(g) for g in groups), MACRO, *(lang_unit(lang) for lang in langs))

    splits = (Split.FULL, Split.QUICK)
    needed = [metric_key(p, setting, u, metric) for p in splits for u in units]
    needed += [metric_key(p, Setting.MUL, u, RD) for p in splits for u in units]
    needed += [size_key(p, n) for p in splits for n in SIZES]
    series = {e.id: store.metrics(e.id, keys=needed) for e in done}
    full_keys = {k for k in needed if k.startswith(f"{Split.FULL}/")}
    has_full = {i for i, ms in series.items() if any(m.key in full_keys for m in ms)}
    if source == Source.AUTO:
        source = Split.FULL if len(has_full) == len(done) else Split.QUICK
        if source == Split.QUICK:
            notes.append(
                f"{len(done) - len(has_full)} of {len(done)} done runs have no full-benchmark result "
                "(eval.full_at_end = false): every run is scored by its last quick-curve evaluation "
                "(eval/…) instead")
    runs: list[RunValues] = []
    sizes: dict[str, float] = {}
    for e in done:
        last: dict[str, tuple[int, float]] = {}
        for m in series[e.id]:
            if m.key.startswith(f"{source}/") and (m.key not in last or m.step >= last[m.key][0]):
                last[m.key] = (m.step, m.value)
        vals = {u: last[key][1] for u in units if (key := metric_key(source, setting, u, metric)) in last}
        rd = {u: last[key][1] for u in units if (key := metric_key(source, Setting.MUL, u, RD)) in last}
        # full/… has no step-0 point: the untrained encoder is only comparable on the eval/… set.
        start = {m.key: m.value for m in series[e.id] if m.step == 0 and source == Split.QUICK}
        b_vals = {u: start[key] for u in units if (key := metric_key(source, setting, u, metric)) in start}
        b_rank = {u: start[key] for u in units if (key := metric_key(source, Setting.MUL, u, RD)) in start}
        if not vals:
            notes.append(f"#{e.id} (ratio {e.ratio}, seed {e.seed}) has no {source}/…/{setting}/{metric} "
                         "values; left out")
            continue
        for n in SIZES:
            if size_key(source, n) in last:
                sizes.setdefault(n, last[size_key(source, n)][1])
        step = max(s for s, _ in last.values())
        runs.append(RunValues(e.id, str(parse_ratio(e.ratio)), e.seed, source, step, vals, rd, b_vals, b_rank))
    if not runs:
        raise ExperimentNotFound(f"{selection}: no done run has {source}/… values for {setting} {metric}")
    steps = sorted({r.step for r in runs})
    if len(steps) > 1:
        notes.append(f"runs were scored at different steps ({', '.join(map(str, steps))})")

    ratios = tuple(sorted({r.ratio for r in runs}, key=ratio_sort_key))
    summary: dict[tuple[str, Unit], Stat] = {}
    rank: dict[tuple[str, Unit], Stat] = {}
    by_seed: dict[tuple[str, Unit], dict[int, float]] = {}
    for ratio in ratios:
        mine = [r for r in runs if r.ratio == ratio]
        for u in units:
            summary[(ratio, u)] = describe([r.values[u] for r in mine if u in r.values])
            by_seed[(ratio, u)] = {r.seed: r.values[u] for r in mine if u in r.values}
            rds = [r.rank_distance[u] for r in mine if u in r.rank_distance]
            if rds:
                rank[(ratio, u)] = describe(rds)
    differences: dict[tuple[str, Unit], PairedDiff] = {}
    if baseline in ratios:
        for ratio in ratios:
            if ratio != baseline:
                for u in units:
                    differences[(ratio, u)] = paired_difference(by_seed[(ratio, u)], by_seed[(baseline, u)])
    else:
        notes.append(f"no done run at the baseline ratio {baseline}: differences left out")
    used = [e for e in done if e.id in {r.experiment_id for r in runs}]
    return Report(selection, metric, setting, source, _subset(used, source), baseline, ratios, units,
                  summary, rank, differences, tuple(runs), counts, groups, zero_shot,
                  _setup(used, source, sizes, ", ".join(map(str, steps))), tuple(notes),
                  *(_pooled([getattr(r, f) for r in runs], units) for f in ("before", "before_rank")))


def _pooled(per_run: Sequence[Mapping[Unit, float]], units: Sequence[Unit]) -> dict[Unit, Stat]:
    return {u: describe(vals) for u in units if (vals := [v[u] for v in per_run if u in v])}


def _subset(runs: Sequence[Experiment], source: str) -> bool:
    return source == Split.QUICK and any(e.config["eval"].get("subset_questions", 0) > 0 for e in runs)


def _total(counts: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for by_status in counts.values():
        for s, n in by_status.items():
            out[s] = out.get(s, 0) + n
    return out

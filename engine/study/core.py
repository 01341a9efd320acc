"""The study: which runs count, the value each contributes, and the statistics over seeds.

One pure function, `compute_study(experiments, series, …)`, decides everything, and both front
ends call it: `optical report` feeds it points read from the store (`build_report`), the
dashboard's study screen feeds it the histories it already holds. So the two can never pick
different runs or values.

The rules, in order (each excluded run is listed in `Study.excluded` with its reason):
1. Only `done` runs count. Queued, running, failed and cancelled runs are listed, not counted;
   a running run joins the study when it finishes (no provisional numbers).
2. A cell is (extra-factor levels, ratio); seeds are its replicates. Two done runs of the same
   cell and seed (a clone, a re-queued copy) count once: the newest (highest id) counts, the
   older is listed as superseded.
3. Values come from the full benchmark (`full/…`) when every counted run with values has it, else
   from each run's quick-subset evaluation (`eval/…`) — `Study.source` and the notes say which. A run's
   value is its last point of that split, or, when the run selected a model (`train.select`
   other than "last") and recorded the selected step, the quick-eval point at that step.
   A counted run without any value for the metric and setting is listed as such.

Extra factors: every key a run was swept over (`Experiment.factors`, from `queue add --sweep`),
plus any config key that differs between the selected runs (runs with different configs are
never pooled; keys that do not change what is trained, such as the device, are only noted).
Statistics per cell and unit (resource group, macro, query language): mean, sample sd and a
95% Student-t interval; paired differences by seed of every ratio from the baseline ratio
within each level, and of every factor level from the factor's first level per ratio (the
interaction).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from engine.config import Config, parse_ratio, ratio_sort_key
from engine.errors import ConfigError, ExperimentNotFound, OpticalError
from engine.metric_keys import (
    MACRO,
    RANKING_METRICS,
    SETTINGS,
    SIZES,
    MetricName,
    Setting,
    Split,
    TrainKey,
    Unit,
    group_unit,
    lang_unit,
    metric_key,
    size_key,
)
from engine.statuses import Status
from engine.store import Experiment, Store
from engine.sweep import level_text


class Source(StrEnum):
    """Which evaluation a report reads: the full benchmark when every run has it, else the last
    quick-subset point (auto), or one of them explicitly."""

    AUTO = "auto"
    FULL = Split.FULL.value
    QUICK = Split.QUICK.value


class Exclusion(StrEnum):
    """Why a selected run is not counted."""

    NOT_DONE = "not done"  # queued, running, failed or cancelled: see its status
    SUPERSEDED = "superseded"  # a newer done run of the same cell and seed counts instead
    NO_VALUES = "no values"  # done, but nothing recorded for this metric, setting and source


RD = MetricName.RANK_DISTANCE
#: Keys that decide where and how a run executes, not what it learns: a difference between runs
#: is noted, never split on (unless the key was swept on purpose).
NOT_FACTORS = frozenset({"train.ratio", "train.seed", "data.data_dir", "train.device", "train.checkpoint_every",
                         "train.log_every", "eval.batch_size", "train.save_model"})
_DEFAULTS = Config().to_dict()

#: A run's recorded series: metric key -> step -> value (what the dashboard's histories hold).
RunSeries = Mapping[str, Mapping[int, float]]
#: One level per extra factor, in `Study.factors` order ("0", "batch").
Levels = tuple[str, ...]


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


# --------------------------------------------------------------------------- the study


@dataclass(frozen=True)
class RunValues:
    """One counted run's values: unit -> metric value, unit -> Mul rank distance."""

    experiment_id: int
    ratio: str
    seed: int
    levels: Levels
    source: str  # "full" | "eval"
    step: int
    values: Mapping[Unit, float]
    rank_distance: Mapping[Unit, float]
    # The step-0 evaluation (the encoder before training) on the same subset; only for eval/…
    before: Mapping[Unit, float]
    before_rank: Mapping[Unit, float]
    selected_step: int | None = None  # the step train.select chose, when the run recorded it


@dataclass(frozen=True)
class Excluded:
    """A selected run that is not counted, and why."""

    experiment_id: int
    ratio: str
    seed: int
    levels: Levels
    status: str
    reason: Exclusion
    detail: str  # "step 120/200", "by #15", "retried as #14", ""


@dataclass(frozen=True)
class Interaction:
    """Δ of one factor's level b from its reference level a, at one ratio and the other factors'
    levels (`panel` is b's full levels), paired by seed."""

    factor: str
    level_a: str
    level_b: str
    panel: Levels
    ratio: str
    unit: Unit
    diff: PairedDiff


@dataclass(frozen=True)
class Study:
    selection: str
    metric: str
    setting: str
    source: str  # "full" (complete MLQA-R) | "eval" (last quick-curve evaluation)
    subset: bool  # True when the numbers come from the quick subset, not the full benchmark
    baseline: str
    select: str  # train.select of the counted runs: which model the numbers are for
    factors: tuple[str, ...]  # extra factors beyond ratio and seed, e.g. ("ot.weight",)
    levels: Mapping[str, tuple[str, ...]]  # factor -> its levels among counted runs, in order
    panels: tuple[Levels, ...]  # the level combinations with counted runs, in order
    ratios: tuple[str, ...]  # ordered 1:0 … 0:1
    units: tuple[Unit, ...]
    summary: Mapping[tuple[Levels, str, Unit], Stat]
    rank_distance: Mapping[tuple[Levels, str, Unit], Stat]  # empty when mul was not evaluated
    differences: Mapping[tuple[Levels, str, Unit], PairedDiff]  # ratio − baseline within a panel
    interactions: tuple[Interaction, ...]
    runs: tuple[RunValues, ...]
    excluded: tuple[Excluded, ...]
    counts: Mapping[tuple[Levels, str], Mapping[str, int]]  # (levels, ratio) -> status -> experiments
    groups: Mapping[str, tuple[str, ...]]
    zero_shot: tuple[str, ...]
    setup: Mapping[str, str]  # what was trained and scored, for the caption
    notes: tuple[str, ...]
    # The untrained encoder (step 0) per panel, when scored on the same eval/… set
    before: Mapping[tuple[Levels, Unit], Stat]
    before_rank: Mapping[tuple[Levels, Unit], Stat]
    # The user's tags of the selected runs that have any (experiment id -> tags): shown, not used.
    tags: Mapping[int, tuple[str, ...]] = field(default_factory=dict)

    def panel_label(self, panel: Levels) -> str:
        """`ot.weight=0 train.mixing=batch`, or "" without extra factors."""
        return " ".join(f"{f}={v}" for f, v in zip(self.factors, panel))


# --------------------------------------------------------------------------- factors


def config_value(config: Mapping[str, Any], key: str) -> Any:
    """A run's frozen config value, or the default when the run predates the key."""
    sec, _, name = key.partition(".")
    section = config.get(sec, {})
    return section[name] if isinstance(section, Mapping) and name in section else _DEFAULTS.get(sec, {}).get(name)


def _level_order(texts: set[str]) -> tuple[str, ...]:
    def number(t: str) -> float | None:
        try:
            x = float(t)
        except ValueError:
            return None
        return x if math.isfinite(x) else None

    if all(number(t) is not None for t in texts):
        return tuple(sorted(texts, key=lambda t: number(t) or 0.0))
    return tuple(sorted(texts))


def _factors(exps: Sequence[Experiment]) -> tuple[list[str], list[str]]:
    """(factor keys, notes): swept keys, plus config keys whose values differ between runs."""
    declared = sorted({k for e in exps for k in e.factors})
    keys = sorted({f"{sec}.{name}" for e in exps for sec, values in e.config.items()
                   if isinstance(values, Mapping) for name in values})
    differing = [k for k in keys if k not in declared
                 and len({level_text(config_value(e.config, k)) for e in exps}) > 1]
    found = [k for k in differing if k not in NOT_FACTORS]
    notes = []
    if found:
        notes.append("runs differ in " + ", ".join(found) + " without a --sweep: the study splits by "
                     + ("it" if len(found) == 1 else "them") + " (runs with different configs are never pooled)")
    quiet = [k for k in differing if k in NOT_FACTORS and k not in ("train.ratio", "train.seed")]
    if quiet:
        notes.append("runs differ in " + ", ".join(quiet) + ", which does not change what is trained; not split")
    return declared + found, notes


# --------------------------------------------------------------------------- values of one run


def _last(points: Mapping[int, float] | None, step: int | None = None) -> tuple[int, float] | None:
    if not points:
        return None
    if step is not None:
        return (step, points[step]) if step in points else None
    s = max(points)
    return s, points[s]


#: The step whose weights a run's final numbers describe (train.select), recorded by the training loop.
SELECTED_STEP_KEY: str = TrainKey.SELECTED_STEP


def _selected_step(series: RunSeries) -> int | None:
    last = _last(series.get(SELECTED_STEP_KEY))
    return int(last[1]) if last is not None else None


def _units(config: Mapping[str, Any]) -> tuple[dict[str, tuple[str, ...]], tuple[str, ...]]:
    groups = {g: tuple(config_value(config, f"eval.{g}") or ()) for g in ("high", "low")}
    return groups, tuple(config_value(config, "eval.langs") or ())


def needed_keys(experiments: Sequence[Experiment], metric: str, setting: str) -> list[str]:
    """Every key `compute_study` may read for these runs (what a reader has to load)."""
    units: set[Unit] = {MACRO}
    for e in experiments:
        groups, langs = _units(e.config)
        units |= {group_unit(g) for g in groups} | {lang_unit(x) for x in langs}
    ordered = sorted(units)
    keys = [metric_key(p, setting, u, metric) for p in (Split.FULL, Split.QUICK) for u in ordered]
    keys += [metric_key(p, Setting.MUL, u, RD) for p in (Split.FULL, Split.QUICK) for u in ordered]
    keys += [size_key(p, n) for p in (Split.FULL, Split.QUICK) for n in SIZES]
    return [*keys, SELECTED_STEP_KEY]


# --------------------------------------------------------------------------- the core


def check_choices(metric: str, setting: str, source: str, baseline: str) -> str:
    """Refuse an unknown metric, setting or source; the baseline ratio in its canonical form."""
    if metric not in RANKING_METRICS:
        raise ConfigError(f"--metric {metric!r}: valid metrics are {', '.join(RANKING_METRICS)}")
    if setting not in SETTINGS:
        raise ConfigError(f"--setting {setting!r}: valid settings are {', '.join(SETTINGS)}")
    if source not in set(Source):
        raise ConfigError(f"--source {source!r}: valid sources are {', '.join(Source)}")
    return str(parse_ratio(baseline))


def compute_study(experiments: Sequence[Experiment], series: Mapping[int, RunSeries], *, selection: str,
                  metric: str = MetricName.MAP, setting: str = Setting.MUL, source: str = Source.AUTO,
                  baseline: str = "1:1") -> Study:
    """The study of these experiments from their recorded points (pure: no store, no clock).

    `series` needs only the done runs' points (`needed_keys`); extra keys are ignored."""
    baseline = check_choices(metric, setting, source, baseline)
    exps = sorted(experiments, key=lambda e: e.id)
    factors, notes = _factors(exps)
    levels_of = {e.id: tuple(level_text(config_value(e.config, k)) for k in factors) for e in exps}
    ratio_of = {e.id: _ratio(e.ratio) for e in exps}
    counts: dict[tuple[Levels, str], dict[str, int]] = {}
    for e in exps:
        cell = counts.setdefault((levels_of[e.id], ratio_of[e.id]), {})
        cell[e.status] = cell.get(e.status, 0) + 1

    excluded: list[Excluded] = []

    def exclude(e: Experiment, reason: Exclusion, detail: str) -> None:
        excluded.append(Excluded(e.id, ratio_of[e.id], e.seed, levels_of[e.id], e.status, reason, detail))

    # 1. only done runs; 2. one per (cell, seed): the newest.
    retried = {e.retry_of: e.id for e in exps if e.retry_of is not None}
    counted: dict[tuple[Levels, str, int], Experiment] = {}
    for e in exps:
        if e.status != Status.DONE:
            detail = (f"step {e.step}/{e.total_steps}" if e.status == Status.RUNNING and e.total_steps else
                      f"retried as #{retried[e.id]}" if e.id in retried else
                      f"retry of #{e.retry_of}" if e.retry_of is not None else "")
            exclude(e, Exclusion.NOT_DONE, detail)
            continue
        key = (levels_of[e.id], ratio_of[e.id], e.seed)
        if key in counted:
            exclude(counted[key], Exclusion.SUPERSEDED, f"by #{e.id}")
        counted[key] = e
    done = sorted(counted.values(), key=lambda e: e.id)

    # 3. the values: the full benchmark when every counted run has it, else the quick subset.
    reference = done[0].config if done else exps[0].config if exps else _DEFAULTS
    groups, langs = _units(reference)
    if any(_units(e.config) != (groups, langs) for e in done):
        notes.append("runs define the languages or resource groups differently; those of the first run are shown")
    # Zero-shot by what the runs train on: the counted ones, else (nothing done yet, an
    # all-cancelled sweep) every run of the selection; no run must not make every language
    # zero-shot.
    trained_by = [e.config for e in done or exps] or [_DEFAULTS]
    train_langs = sorted({lang for c in trained_by
                          for lang in config_value(c, "data.train_langs") or ()})
    zero_shot = tuple(lang for lang in langs if lang not in train_langs)
    units: tuple[Unit, ...] = (*(group_unit(g) for g in groups), MACRO, *(lang_unit(x) for x in langs))
    empty: RunSeries = {}

    def has(e: Experiment, split: str) -> bool:
        return any(series.get(e.id, empty).get(metric_key(split, s, u, m))
                   for u in units for s, m in ((setting, metric), (Setting.MUL, RD)))

    # A run with no points at all is listed below; it does not decide the source of the others.
    scored = [e for e in done if has(e, Split.FULL) or has(e, Split.QUICK)]
    has_full = [e for e in scored if has(e, Split.FULL)]
    if source == Source.AUTO:
        source = Split.FULL if scored and len(has_full) == len(scored) else Split.QUICK
        if source == Split.QUICK and scored:
            notes.append(f"{len(scored) - len(has_full)} of {len(scored)} counted runs have no full-benchmark "
                         "result (eval.full_at_end = false): every run is scored by its last quick-curve "
                         "evaluation (eval/…) instead")
    runs: list[RunValues] = []
    sizes: dict[str, float] = {}
    for e in done:
        points = series.get(e.id, empty)
        selected = _selected_step(points)
        # full/… is evaluated once, on the selected weights; eval/… has a point per evaluation step.
        at = selected if source == Split.QUICK and config_value(e.config, "train.select") not in (None, "last") else None

        def final(key: str, points: RunSeries = points, at: int | None = at) -> tuple[int, float] | None:
            return _last(points.get(key), at)

        vals = {u: v for u in units if (v := final(metric_key(source, setting, u, metric))) is not None}
        rd = {u: v for u in units if (v := final(metric_key(source, Setting.MUL, u, RD))) is not None}
        if not vals:
            exclude(e, Exclusion.NO_VALUES, f"no {source}/…/{setting}/{metric} points")
            continue
        # full/… has no step-0 point: the untrained encoder is only comparable on the eval/… set.
        b_vals: dict[Unit, float] = {}
        b_rank: dict[Unit, float] = {}
        if source == Split.QUICK:
            for u in units:
                if (v0 := (points.get(metric_key(source, setting, u, metric)) or {}).get(0)) is not None:
                    b_vals[u] = v0
                if (r0 := (points.get(metric_key(source, Setting.MUL, u, RD)) or {}).get(0)) is not None:
                    b_rank[u] = r0
        for n in SIZES:  # what was scored: the same at every evaluation of a split
            if (size := _last(points.get(size_key(source, n)))) is not None:
                sizes.setdefault(n, size[1])
        step = max(s for s, _ in (*vals.values(), *rd.values()))
        runs.append(RunValues(e.id, ratio_of[e.id], e.seed, levels_of[e.id], source, step,
                              {u: v for u, (_, v) in vals.items()}, {u: v for u, (_, v) in rd.items()},
                              b_vals, b_rank, selected))
    steps = sorted({r.step for r in runs})
    if len(steps) > 1:
        notes.append(f"runs were scored at different steps ({', '.join(map(str, steps))})")

    # Statistics per cell; paired differences within a panel and across a factor's levels.
    level_lists = {f: _level_order({r.levels[i] for r in runs}) for i, f in enumerate(factors)}
    order = {f: {v: j for j, v in enumerate(level_lists[f])} for f in factors}
    panels = tuple(sorted({r.levels for r in runs},
                          key=lambda p: tuple(order[f][v] for f, v in zip(factors, p))))
    ratios = tuple(sorted({r.ratio for r in runs}, key=ratio_sort_key))
    summary: dict[tuple[Levels, str, Unit], Stat] = {}
    rank: dict[tuple[Levels, str, Unit], Stat] = {}
    by_seed: dict[tuple[Levels, str, Unit], dict[int, float]] = {}
    for panel in panels:
        for ratio in ratios:
            mine = [r for r in runs if r.levels == panel and r.ratio == ratio]
            if not mine:
                continue
            for u in units:
                summary[(panel, ratio, u)] = describe([r.values[u] for r in mine if u in r.values])
                by_seed[(panel, ratio, u)] = {r.seed: r.values[u] for r in mine if u in r.values}
                rds = [r.rank_distance[u] for r in mine if u in r.rank_distance]
                if rds:
                    rank[(panel, ratio, u)] = describe(rds)
    differences: dict[tuple[Levels, str, Unit], PairedDiff] = {}
    for panel in panels:
        if (panel, baseline, MACRO) not in by_seed:
            where = f" at {' '.join(f'{f}={v}' for f, v in zip(factors, panel))}" if factors else ""
            notes.append(f"no counted run at the baseline ratio {baseline}{where}: differences left out")
            continue
        for ratio in ratios:
            if ratio != baseline and (panel, ratio, MACRO) in by_seed:
                for u in units:
                    differences[(panel, ratio, u)] = paired_difference(by_seed[(panel, ratio, u)],
                                                                       by_seed[(panel, baseline, u)])
    interactions: list[Interaction] = []
    for i, f in enumerate(factors):
        if len(level_lists[f]) < 2:
            continue
        reference_level = level_lists[f][0]
        for panel in panels:
            if panel[i] == reference_level:
                continue
            partner = (*panel[:i], reference_level, *panel[i + 1:])
            for ratio in ratios:
                if (panel, ratio, MACRO) in by_seed and (partner, ratio, MACRO) in by_seed:
                    for u in units:
                        interactions.append(Interaction(
                            f, reference_level, panel[i], panel, ratio, u,
                            paired_difference(by_seed[(panel, ratio, u)], by_seed[(partner, ratio, u)])))
    used = [e for e in done if e.id in {r.experiment_id for r in runs}]
    before = {(p, u): describe(xs) for p in panels for u in units
              if (xs := [r.before[u] for r in runs if r.levels == p and u in r.before])}
    before_rank = {(p, u): describe(xs) for p in panels for u in units
                   if (xs := [r.before_rank[u] for r in runs if r.levels == p and u in r.before_rank])}
    return Study(
        selection=selection, metric=metric, setting=setting, source=source, subset=_subset(used, source),
        baseline=baseline, select=_distinct([config_value(e.config, "train.select") or "last" for e in used])
        or "last",
        factors=tuple(factors), levels=level_lists, panels=panels, ratios=ratios, units=units,
        summary=summary, rank_distance=rank, differences=differences, interactions=tuple(interactions),
        runs=tuple(runs), excluded=tuple(sorted(excluded, key=lambda x: x.experiment_id)),
        counts=counts, groups=groups, zero_shot=zero_shot,
        setup=_setup(used, source, sizes, ", ".join(map(str, steps))), notes=tuple(notes),
        before=before, before_rank=before_rank, tags={e.id: e.tags for e in exps if e.tags})


def _ratio(text: str) -> str:
    try:
        return str(parse_ratio(text))
    except OpticalError:  # a hand-edited row must not hide the rest of the study
        return text


# --------------------------------------------------------------------------- the report's reader


def select_experiments(store: Store, sweep: str | None, ids: Sequence[int] | None,
                       tags: Sequence[str] = ()) -> tuple[list[Experiment], str]:
    """The runs a report is about, and how to name them: ids, a sweep, or the newest sweep;
    with tags, only the runs that have them all (without a sweep or ids: every such run)."""
    if tags:
        exps, selection = (select_experiments(store, sweep, ids) if sweep or ids
                           else (store.list_experiments(), ""))
        tagged = [e for e in exps if set(tags) <= set(e.tags)]
        what = "tagged " + " ".join(tags)
        if not tagged:
            where = f" in {selection}" if selection else ""
            raise ExperimentNotFound(f"no experiment {what}{where}")
        return tagged, f"{selection}, {what}" if selection else f"experiments {what}"
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
            raise ExperimentNotFound(f"no sweep named {sweep!r}; sweeps: {', '.join(map(repr, names)) or 'none'}")
        return exps, sweep_selection(sweep)
    exps = store.list_experiments()
    if not exps:
        raise ExperimentNotFound("the database has no experiments; queue some with: optical queue add")
    # Sweeps with different configs must not be pooled: default to the newest one.
    latest = max(exps, key=lambda e: (e.created_at, e.id)).name
    return [e for e in exps if e.name == latest], f"{sweep_selection(latest)} (the newest; choose with --sweep)"


def sweep_selection(name: str) -> str:
    """How a study of one sweep names itself (report caption and dashboard alike)."""
    return f"sweep {name!r}"


def load_series(store: Store, experiments: Sequence[Experiment], metric: str, setting: str) -> dict[int, RunSeries]:
    """The points `compute_study` reads, for the done runs (the others are never counted)."""
    keys = needed_keys(experiments, metric, setting)
    out: dict[int, RunSeries] = {}
    for e in experiments:
        if e.status == Status.DONE:
            per_key: dict[str, dict[int, float]] = {}
            for m in store.metrics(e.id, keys=keys):
                per_key.setdefault(m.key, {})[m.step] = m.value
            out[e.id] = per_key
    return out


def build_report(store: Store, *, sweep: str | None = None, ids: Sequence[int] | None = None,
                 metric: str = MetricName.MAP, setting: str = Setting.MUL, source: str = Source.AUTO,
                 baseline: str = "1:1", tags: Sequence[str] = ()) -> Study:
    """`optical report`: select the runs, read their points, compute the study; an error when
    nothing can be reported yet."""
    check_choices(metric, setting, source, baseline)  # before reading anything
    exps, selection = select_experiments(store, sweep, ids, tags)
    study = compute_study(exps, load_series(store, exps, metric, setting), selection=selection,
                          metric=metric, setting=setting, source=source, baseline=baseline)
    if not study.runs:
        if not any(e.status == Status.DONE for e in exps):
            total: dict[str, int] = {}
            for e in exps:
                total[e.status] = total.get(e.status, 0) + 1
            status = ", ".join(f"{s} {n}" for s, n in total.items())
            raise ExperimentNotFound(f"nothing to report yet: {selection} has no done experiments ({status})")
        raise ExperimentNotFound(f"{selection}: no done run has {study.source}/… values for {setting} {metric}")
    return study


# --------------------------------------------------------------------------- caption helpers


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
        "questions / candidates": " / ".join(f"{sizes[n]:.0f}" if n in sizes else "?" for n in SIZES),
        "device": _distinct([e.device or "?" for e in runs]),
        "minutes per run": f"{sum(minutes) / len(minutes):.1f}" if minutes else "?",
    }


def _subset(runs: Sequence[Experiment], source: str) -> bool:
    return source == Split.QUICK and any(config_value(e.config, "eval.subset_questions") for e in runs)

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
   from each run's quick-subset evaluation (`eval/…`) — `Study.source` and the notes say which.
   A run's value is its last point of that split, or, when the run selected a model
   (`train.select` other than "last") and recorded the selected step, the quick-eval point at
   that step.
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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from engine.config import parse_ratio
from engine.errors import ConfigError, ExperimentNotFound, OpticalError
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
from engine.stored_config import (
    DEFAULTS,
    NOT_FACTORS,
    StoredConfig,
    config_value,
    groups,
    languages,
    selected_model,
    zero_shot,
)
from engine.study.cells import (
    Interaction,
    before_stats,
    cell_stats,
    interactions,
    layout,
    paired_differences,
)
from engine.study.runs import (
    RD,
    SELECTED_STEP_KEY,
    Cell,
    Excluded,
    Exclusion,
    Levels,
    RunSeries,
    RunValues,
    Source,
    choose_source,
    counted_runs,
    run_values,
)
from engine.study.stats import PairedDiff, Stat, describe, paired_difference
from engine.sweep import level_text

# The study's face: its readers (the report, the screens, the formats) import from here.
__all__ = [
    "SELECTED_STEP_KEY", "Excluded", "Exclusion", "Interaction", "Levels", "PairedDiff",
    "RunSeries", "RunValues", "Source", "Stat", "Study", "build_report", "check_choices",
    "compute_study", "describe", "load_series", "needed_keys", "paired_difference",
    "select_experiments", "sweep_selection",
]

# --------------------------------------------------------------------------- the study


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
    # (levels, ratio) -> status -> experiments
    counts: Mapping[tuple[Levels, str], Mapping[str, int]]
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
        notes.append("runs differ in " + ", ".join(found) + " without a --sweep: the study "
                     "splits by " + ("it" if len(found) == 1 else "them")
                     + " (runs with different configs are never pooled)")
    quiet = [k for k in differing if k in NOT_FACTORS and k not in ("train.ratio", "train.seed")]
    if quiet:
        notes.append("runs differ in " + ", ".join(quiet)
                     + ", which does not change what is trained; not split")
    return declared + found, notes




def _units(config: StoredConfig) -> tuple[dict[str, tuple[str, ...]], tuple[str, ...]]:
    return groups(config), languages(config)


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




def compute_study(experiments: Sequence[Experiment], series: Mapping[int, RunSeries], *,
                  selection: str, metric: str = MetricName.MAP, setting: str = Setting.MUL,
                  source: str = Source.AUTO, baseline: str = "1:1") -> Study:
    """The study of these experiments from their recorded points (pure: no store, no clock).

    `series` needs only the done runs' points (`needed_keys`); extra keys are ignored. The rules
    are the module's, each in its own function: `counted_runs` (1, 2), `choose_source` and
    `run_values` (3), then `cell_stats`, `paired_differences` and `interactions`."""
    baseline = check_choices(metric, setting, source, baseline)
    exps = sorted(experiments, key=lambda e: e.id)
    factors, notes = _factors(exps)
    cells: dict[int, Cell] = {
        e.id: (tuple(level_text(config_value(e.config, k)) for k in factors), _ratio(e.ratio))
        for e in exps}
    done, excluded = counted_runs(exps, cells)
    shown_groups, langs, shown_zero_shot, unit_notes = _shown_units(done, exps)
    notes += unit_notes
    units: tuple[Unit, ...] = (*(group_unit(g) for g in shown_groups), MACRO,
                               *(lang_unit(x) for x in langs))
    source, source_notes = choose_source(done, series, units, metric, setting, source)
    notes += source_notes
    runs, sizes, no_values = run_values(done, series, cells, units, source, metric, setting)
    steps = sorted({r.step for r in runs})
    if len(steps) > 1:
        notes.append(f"runs were scored at different steps ({', '.join(map(str, steps))})")
    at = layout(factors, runs)
    summary, rank, by_seed = cell_stats(runs, at, units)
    differences, baseline_notes = paired_differences(by_seed, at, units, baseline, factors)
    notes += baseline_notes
    used = [e for e in done if e.id in {r.experiment_id for r in runs}]
    before, before_rank = before_stats(runs, at.panels, units)
    return Study(
        selection=selection, metric=metric, setting=setting, source=source,
        subset=_subset(used, source), baseline=baseline,
        select=_distinct([selected_model(e.config) for e in used]) or "last",
        factors=tuple(factors), levels=at.levels, panels=at.panels, ratios=at.ratios,
        units=units, summary=summary, rank_distance=rank, differences=differences,
        interactions=interactions(by_seed, at, units, factors), runs=tuple(runs),
        excluded=tuple(sorted([*excluded, *no_values], key=lambda x: x.experiment_id)),
        counts=_status_counts(exps, cells), groups=shown_groups, zero_shot=shown_zero_shot,
        setup=_setup(used, source, sizes, ", ".join(map(str, steps))), notes=tuple(notes),
        before=before, before_rank=before_rank, tags={e.id: e.tags for e in exps if e.tags})


def _status_counts(exps: Sequence[Experiment], cells: Mapping[int, Cell]
                   ) -> dict[Cell, dict[str, int]]:
    """(levels, ratio) -> status -> how many of the selected runs."""
    counts: dict[Cell, dict[str, int]] = {}
    for e in exps:
        cell = counts.setdefault(cells[e.id], {})
        cell[e.status] = cell.get(e.status, 0) + 1
    return counts


def _shown_units(done: Sequence[Experiment], exps: Sequence[Experiment]
                 ) -> tuple[dict[str, tuple[str, ...]], tuple[str, ...], tuple[str, ...],
                            list[str]]:
    """The groups and languages shown (the first counted run's), the zero-shot ones, and a note
    when the runs define them differently."""
    reference = done[0].config if done else exps[0].config if exps else DEFAULTS
    shown_groups, langs = _units(reference)
    notes = []
    if any(_units(e.config) != (shown_groups, langs) for e in done):
        notes.append("runs define the languages or resource groups differently; those of the "
                     "first run are shown")
    # Zero-shot by what the runs train on: the counted ones, else (nothing done yet, an
    # all-cancelled sweep) every run of the selection; no run must not make every language
    # zero-shot.
    trained_by = [e.config for e in done or exps] or [DEFAULTS]
    return shown_groups, langs, zero_shot(langs, trained_by), notes


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
            raise ExperimentNotFound(f"no sweep named {sweep!r}; "
                                     f"sweeps: {', '.join(map(repr, names)) or 'none'}")
        return exps, sweep_selection(sweep)
    exps = store.list_experiments()
    if not exps:
        raise ExperimentNotFound("the database has no experiments; "
                                 "queue some with: optical queue add")
    # Sweeps with different configs must not be pooled: default to the newest one.
    latest = max(exps, key=lambda e: (e.created_at, e.id)).name
    return ([e for e in exps if e.name == latest],
            f"{sweep_selection(latest)} (the newest; choose with --sweep)")


def sweep_selection(name: str) -> str:
    """How a study of one sweep names itself (report caption and dashboard alike)."""
    return f"sweep {name!r}"


def load_series(store: Store, experiments: Sequence[Experiment], metric: str,
                setting: str) -> dict[int, RunSeries]:
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
                 metric: str = MetricName.MAP, setting: str = Setting.MUL,
                 source: str = Source.AUTO,
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
            raise ExperimentNotFound(f"nothing to report yet: {selection} has no done "
                                     f"experiments ({status})")
        raise ExperimentNotFound(f"{selection}: no done run has {study.source}/… values for "
                                 f"{setting} {metric}")
    return study


# --------------------------------------------------------------------------- caption helpers


def _distinct(values: Sequence[object]) -> str:
    seen: list[str] = []
    for v in values:
        text = ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
        if text not in seen:
            seen.append(text)
    return " | ".join(seen)


def _setup(runs: Sequence[Experiment], source: str, sizes: Mapping[str, float],
           step: str) -> dict[str, str]:
    cfgs = [e.config for e in runs]

    def col(section: str, key: str) -> str:
        return _distinct([config_value(c, f"{section}.{key}", missing="?") for c in cfgs])

    if source == Split.FULL:
        scored = "full MLQA-R benchmark"
    elif not _subset(runs, source):
        scored = (f"full MLQA-R benchmark (last eval/… point, step {step}; "
                  "eval.subset_questions = 0)")
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
        "questions / candidates": " / ".join(f"{sizes[n]:.0f}" if n in sizes else "?"
                                             for n in SIZES),
        "device": _distinct([e.device or "?" for e in runs]),
        "minutes per run": f"{sum(minutes) / len(minutes):.1f}" if minutes else "?",
    }


def _subset(runs: Sequence[Experiment], source: str) -> bool:
    return source == Split.QUICK and any(config_value(e.config, "eval.subset_questions")
                                         for e in runs)

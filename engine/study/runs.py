"""Which runs a study counts and the value each contributes: the study's rules 1 to 3
(engine/study/core.py has them in full).

1. Only done runs count; 2. one run per cell and seed, the newest (`counted_runs`); 3. the values
come from the full benchmark when every counted run has it, else from the quick subset
(`choose_source`), at the step `train.select` chose when the run recorded it (`run_values`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from engine.config import Select
from engine.metric_keys import (
    SIZES,
    MetricName,
    Setting,
    Split,
    TrainKey,
    Unit,
    metric_key,
    size_key,
)
from engine.statuses import Status
from engine.store import Experiment
from engine.stored_config import selected_model

RD = MetricName.RANK_DISTANCE
#: A run's recorded series: metric key -> step -> value (what the dashboard's histories hold).
RunSeries = Mapping[str, Mapping[int, float]]
#: One level per extra factor, in `Study.factors` order ("0", "batch").
Levels = tuple[str, ...]
#: Where a run sits in the study: its extra-factor levels and its ratio; seeds replicate it.
Cell = tuple[Levels, str]
#: The step whose weights a run's final numbers describe (train.select), recorded by the
#: training loop.
SELECTED_STEP_KEY: str = TrainKey.SELECTED_STEP


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


def _excluded(e: Experiment, cell: Cell, reason: Exclusion, detail: str) -> Excluded:
    levels, ratio = cell
    return Excluded(e.id, ratio, e.seed, levels, e.status, reason, detail)


def counted_runs(exps: Sequence[Experiment], cells: Mapping[int, Cell]
                 ) -> tuple[list[Experiment], list[Excluded]]:
    """Rules 1 and 2: the done runs, one per (cell, seed), the newest (by id); and the runs left
    out (not done, or superseded by a newer run of the same cell and seed)."""
    excluded: list[Excluded] = []
    retried = {e.retry_of: e.id for e in exps if e.retry_of is not None}
    counted: dict[tuple[Levels, str, int], Experiment] = {}
    for e in exps:
        if e.status != Status.DONE:
            detail = (f"step {e.step}/{e.total_steps}"
                      if e.status == Status.RUNNING and e.total_steps else
                      f"retried as #{retried[e.id]}" if e.id in retried else
                      f"retry of #{e.retry_of}" if e.retry_of is not None else "")
            excluded.append(_excluded(e, cells[e.id], Exclusion.NOT_DONE, detail))
            continue
        key = (*cells[e.id], e.seed)
        if key in counted:
            older = counted[key]
            excluded.append(_excluded(older, cells[older.id], Exclusion.SUPERSEDED, f"by #{e.id}"))
        counted[key] = e
    return sorted(counted.values(), key=lambda e: e.id), excluded


def choose_source(done: Sequence[Experiment], series: Mapping[int, RunSeries],
                  units: Sequence[Unit], metric: str, setting: str, source: str
                  ) -> tuple[str, list[str]]:
    """Rule 3's split: the one asked for, or (auto) the full benchmark when every counted run
    with values has it, else the quick subset; and the note that says so."""
    if source != Source.AUTO:
        return source, []
    empty: RunSeries = {}

    def has(e: Experiment, split: str) -> bool:
        return any(series.get(e.id, empty).get(metric_key(split, s, u, m))
                   for u in units for s, m in ((setting, metric), (Setting.MUL, RD)))

    # A run with no points at all is listed later; it does not decide the source of the others.
    scored = [e for e in done if has(e, Split.FULL) or has(e, Split.QUICK)]
    has_full = [e for e in scored if has(e, Split.FULL)]
    if scored and len(has_full) == len(scored):
        return Split.FULL, []
    if not scored:
        return Split.QUICK, []
    return Split.QUICK, [(
        f"{len(scored) - len(has_full)} of {len(scored)} counted runs have no full-benchmark "
        "result (eval.full_at_end = false): every run is scored by its last quick-curve "
        "evaluation (eval/…) instead")]


def _last(points: Mapping[int, float] | None,
          step: int | None = None) -> tuple[int, float] | None:
    if not points:
        return None
    if step is not None:
        return (step, points[step]) if step in points else None
    s = max(points)
    return s, points[s]


def _selected_step(series: RunSeries) -> int | None:
    last = _last(series.get(SELECTED_STEP_KEY))
    return int(last[1]) if last is not None else None


def run_values(done: Sequence[Experiment], series: Mapping[int, RunSeries],
               cells: Mapping[int, Cell], units: Sequence[Unit], source: str, metric: str,
               setting: str) -> tuple[list[RunValues], dict[str, float], list[Excluded]]:
    """Rule 3's values: each counted run's last point of `source`, or its quick-eval point at the
    step `train.select` chose; the sizes scored; and the runs without any value."""
    runs: list[RunValues] = []
    sizes: dict[str, float] = {}
    excluded: list[Excluded] = []
    empty: RunSeries = {}

    def key(u: Unit) -> str:
        return metric_key(source, setting, u, metric)

    def rd_key(u: Unit) -> str:
        return metric_key(source, Setting.MUL, u, RD)

    for e in done:
        points = series.get(e.id, empty)
        selected = _selected_step(points)
        # full/… is evaluated once, on the selected weights; eval/… has a point per evaluation
        # step.
        at = (selected if source == Split.QUICK and selected_model(e.config) != Select.LAST
              else None)
        vals = {u: v for u in units if (v := _last(points.get(key(u)), at)) is not None}
        rd = {u: v for u in units if (v := _last(points.get(rd_key(u)), at)) is not None}
        if not vals:
            excluded.append(_excluded(e, cells[e.id], Exclusion.NO_VALUES,
                                      f"no {source}/…/{setting}/{metric} points"))
            continue
        # full/… has no step-0 point: the untrained encoder is only comparable on the eval/… set.
        b_vals: dict[Unit, float] = {}
        b_rank: dict[Unit, float] = {}
        if source == Split.QUICK:
            for u in units:
                if (v0 := (points.get(key(u)) or {}).get(0)) is not None:
                    b_vals[u] = v0
                if (r0 := (points.get(rd_key(u)) or {}).get(0)) is not None:
                    b_rank[u] = r0
        for n in SIZES:  # what was scored: the same at every evaluation of a split
            if (size := _last(points.get(size_key(source, n)))) is not None:
                sizes.setdefault(n, size[1])
        step = max(s for s, _ in (*vals.values(), *rd.values()))
        levels, ratio = cells[e.id]
        runs.append(RunValues(e.id, ratio, e.seed, levels, source, step,
                              {u: v for u, (_, v) in vals.items()},
                              {u: v for u, (_, v) in rd.items()}, b_vals, b_rank, selected))
    return runs, sizes, excluded

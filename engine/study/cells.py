"""The study's statistics over its counted runs: the layout (factor levels, panels, ratios), each
cell's mean and interval per unit, paired differences from the baseline ratio within a panel,
and each factor level's difference from the factor's first level (the interaction)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from engine.config import ratio_sort_key
from engine.metric_keys import MACRO, Unit
from engine.study.runs import Levels, RunValues
from engine.study.stats import PairedDiff, Stat, describe, paired_difference

#: A number's place in the study's tables: (factor levels, ratio, unit).
Place = tuple[Levels, str, Unit]


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
class Layout:
    """Where the counted runs sit: each factor's levels, the level combinations, the ratios."""

    levels: dict[str, tuple[str, ...]]  # factor -> its levels among counted runs, in order
    panels: tuple[Levels, ...]
    ratios: tuple[str, ...]  # ordered 1:0 … 0:1


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


def layout(factors: Sequence[str], runs: Sequence[RunValues]) -> Layout:
    """Levels in numeric order when they are numbers (else text order), panels in the order of
    their levels, ratios from all monolingual to all cross-lingual."""
    levels = {f: _level_order({r.levels[i] for r in runs}) for i, f in enumerate(factors)}
    order = {f: {v: j for j, v in enumerate(levels[f])} for f in factors}
    panels = tuple(sorted({r.levels for r in runs},
                          key=lambda p: tuple(order[f][v] for f, v in zip(factors, p))))
    ratios = tuple(sorted({r.ratio for r in runs}, key=ratio_sort_key))
    return Layout(levels, panels, ratios)


def cell_stats(runs: Sequence[RunValues], at: Layout, units: Sequence[Unit]
               ) -> tuple[dict[Place, Stat], dict[Place, Stat], dict[Place, dict[int, float]]]:
    """Per cell and unit: the metric's statistics over seeds, the rank distance's (where
    recorded), and the values by seed that the paired differences read."""
    summary: dict[Place, Stat] = {}
    rank: dict[Place, Stat] = {}
    by_seed: dict[Place, dict[int, float]] = {}
    for panel in at.panels:
        for ratio in at.ratios:
            mine = [r for r in runs if r.levels == panel and r.ratio == ratio]
            if not mine:
                continue
            for u in units:
                summary[(panel, ratio, u)] = describe([r.values[u] for r in mine if u in r.values])
                by_seed[(panel, ratio, u)] = {r.seed: r.values[u] for r in mine if u in r.values}
                rds = [r.rank_distance[u] for r in mine if u in r.rank_distance]
                if rds:
                    rank[(panel, ratio, u)] = describe(rds)
    return summary, rank, by_seed


def paired_differences(by_seed: Mapping[Place, Mapping[int, float]], at: Layout,
                       units: Sequence[Unit], baseline: str, factors: Sequence[str]
                       ) -> tuple[dict[Place, PairedDiff], list[str]]:
    """Every ratio minus the baseline ratio within each panel, paired by seed; and a note for
    each panel without a counted run at the baseline."""
    differences: dict[Place, PairedDiff] = {}
    notes: list[str] = []
    for panel in at.panels:
        if (panel, baseline, MACRO) not in by_seed:
            where = f" at {' '.join(f'{f}={v}' for f, v in zip(factors, panel))}" if factors else ""
            notes.append(f"no counted run at the baseline ratio {baseline}{where}: "
                         "differences left out")
            continue
        for ratio in at.ratios:
            if ratio != baseline and (panel, ratio, MACRO) in by_seed:
                for u in units:
                    differences[(panel, ratio, u)] = paired_difference(
                        by_seed[(panel, ratio, u)], by_seed[(panel, baseline, u)])
    return differences, notes


def interactions(by_seed: Mapping[Place, Mapping[int, float]], at: Layout,
                 units: Sequence[Unit], factors: Sequence[str]) -> tuple[Interaction, ...]:
    """Each factor's every level minus its first level, at the same ratio and other factors'
    levels, paired by seed."""
    found: list[Interaction] = []
    for i, f in enumerate(factors):
        if len(at.levels[f]) < 2:
            continue
        reference_level = at.levels[f][0]
        for panel in at.panels:
            if panel[i] == reference_level:
                continue
            partner = (*panel[:i], reference_level, *panel[i + 1:])
            for ratio in at.ratios:
                if (panel, ratio, MACRO) in by_seed and (partner, ratio, MACRO) in by_seed:
                    found += [Interaction(f, reference_level, panel[i], panel, ratio, u,
                                          paired_difference(by_seed[(panel, ratio, u)],
                                                            by_seed[(partner, ratio, u)]))
                              for u in units]
    return tuple(found)


def before_stats(runs: Sequence[RunValues], panels: Sequence[Levels], units: Sequence[Unit]
                 ) -> tuple[dict[tuple[Levels, Unit], Stat], dict[tuple[Levels, Unit], Stat]]:
    """The untrained encoder (step 0) per panel and unit: its metric and its rank distance."""
    before = {(p, u): describe(xs) for p in panels for u in units
              if (xs := [r.before[u] for r in runs if r.levels == p and u in r.before])}
    before_rank = {(p, u): describe(xs) for p in panels for u in units
                   if (xs := [r.before_rank[u] for r in runs
                              if r.levels == p and u in r.before_rank])}
    return before, before_rank

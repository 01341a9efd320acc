"""The ratio study as numbers: final metric per ratio, mean and spread over seeds.

Final value of an experiment: its full-benchmark point when it has one, else its last
quick-eval point. Ratios are ordered as the study reads them, 1:0 … 0:1.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.config import ratio_sort_key
from engine.metric_keys import Split, Unit, group_unit, lang_unit, metric_key
from engine.statuses import Status
from engine.store import Experiment
from optical_tui.screens.experiment_data import History, groups, languages, train_langs

# Done runs are final; running ones count with their latest quick eval, flagged as provisional.
STUDY_STATUSES = (Status.DONE, Status.RUNNING)


@dataclass(frozen=True)
class Cell:
    mean: float
    sd: float
    n: int
    provisional: bool = False

    def text(self, digits: int = 3) -> str:
        spread = f" ± {self.sd:.{digits}f}" if self.n > 1 else ""
        return f"{self.mean:.{digits}f}{spread} (n={self.n}){' ~' if self.provisional else ''}"


@dataclass(frozen=True)
class StudyRow:
    label: str
    kind: str                      # "group" | "lang"
    cells: tuple[Cell | None, ...]  # one per ratio
    zero_shot: bool = False


@dataclass(frozen=True)
class Study:
    name: str
    ratios: tuple[str, ...]
    rows: tuple[StudyRow, ...]
    zero_shot: tuple[str, ...]
    train_langs: tuple[str, ...]
    groups: Mapping[str, tuple[str, ...]]
    counts: Mapping[str, int]      # status -> experiments of the sweep


def final_value(history: History, setting: str, unit: Unit, metric: str) -> float | None:
    """The full benchmark's value at its latest step, else the latest quick-eval point."""
    full = history.last(metric_key(Split.FULL, setting, unit, metric))
    return full if full is not None else history.last(metric_key(Split.QUICK, setting, unit, metric))


def _cell(values: Sequence[float], provisional: bool) -> Cell | None:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return None
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return Cell(statistics.fmean(values), sd, len(values), provisional)


def build_study(name: str, experiments: Sequence[Experiment], histories: Mapping[int, History],
                setting: str, metric: str) -> Study:
    sweep = [e for e in experiments if e.name == name]
    counts: dict[str, int] = {}
    for e in sweep:
        counts[e.status] = counts.get(e.status, 0) + 1
    used = [e for e in sweep if e.status in STUDY_STATUSES]
    config: dict[str, Any] = (used or sweep)[0].config if sweep else {}
    ratios = tuple(sorted({e.ratio for e in used}, key=ratio_sort_key))
    trained = set().union(*(train_langs(e.config) for e in sweep)) if sweep else set()
    langs = languages(config)
    zero_shot = tuple(x for x in langs if x not in trained)
    grp = groups(config)

    def row(label: str, kind: str, unit: Unit, zs: bool = False) -> StudyRow:
        cells = []
        for r in ratios:
            runs = [e for e in used if e.ratio == r]
            values = [final_value(histories.get(e.id, History()), setting, unit, metric) for e in runs]
            provisional = any(e.status != Status.DONE for e in runs)
            cells.append(_cell([v for v in values if v is not None], provisional))
        return StudyRow(label, kind, tuple(cells), zs)

    rows = [row(g, "group", group_unit(g)) for g in ("high", "low") if grp.get(g)]
    rows += [row(x, "lang", lang_unit(x), x in zero_shot) for x in langs]
    return Study(name, ratios, tuple(rows), zero_shot, tuple(sorted(trained)), grp, counts)

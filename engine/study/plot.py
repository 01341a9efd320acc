"""The study plot: metric vs ratio (1:0 … 0:1), one line per resource group, 95% CIs, dots = seeds.

With extra factors (a `--sweep`), one panel per level combination (e.g. λ = 0 | λ = 1), sharing
the y axis so the panels compare at a glance. With the Mul setting a second row shows the rank
distance (language bias) the same way. matplotlib is imported lazily with the Agg backend, so
reports work over SSH with no display.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.errors import ConfigError
from engine.metric_keys import MACRO, MetricName, Setting, Unit
from engine.study.core import Levels, Stat, Study
from engine.study.formats import unit_label

PLOT_SUFFIXES = (".png", ".svg", ".pdf")
_TITLE_PT = 10
#: A generous average glyph width of the default sans-serif font, in ems: wrapping errs short.
_CHAR_EM = 0.62


def _panel(ax: Any, report: Study, panel: Levels, table: Mapping[tuple[Levels, str, Unit], Stat],
           per_run: str,
           ylabel: str, before: Mapping[tuple[Levels, Unit], Stat]) -> None:
    xs = list(range(len(report.ratios)))
    if (panel, MACRO) in before:  # the untrained encoder on the same questions, for scale
        ax.axhline(before[(panel, MACRO)].mean, color="grey", linestyle=":",
                   label="macro before training")
    heads = [u for u in report.units if u.kind != "lang"]
    for i, unit in enumerate(heads):
        stats = [table.get((panel, r, unit)) for r in report.ratios]
        means = [s.mean if s and s.n else math.nan for s in stats]
        err = [[(s.mean - s.ci_low) if s and s.n > 1 else 0.0 for s in stats],
               [(s.ci_high - s.mean) if s and s.n > 1 else 0.0 for s in stats]]
        shift = (i - (len(heads) - 1) / 2) * 0.06  # keep overlapping error bars apart
        line = ax.errorbar([x + shift for x in xs], means, yerr=err, marker="o", capsize=4,
                           label=unit_label(report, unit), linestyle="--" if unit == MACRO else "-")
        # Individual seeds, so two- or three-seed intervals can be judged by eye.
        for x, ratio in zip(xs, report.ratios):
            vals = [getattr(run, per_run)[unit] for run in report.runs
                    if run.ratio == ratio and run.levels == panel and unit in getattr(run, per_run)]
            ax.scatter([x + shift] * len(vals), vals, s=10, alpha=0.35,
                       color=line.lines[0].get_color())
    ax.set_xticks(xs, list(report.ratios))
    ax.set_xlabel("mono : cross batch ratio")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def save_plot(report: Study, path: str | Path) -> Path:
    out = Path(path)
    if out.suffix.lower() not in PLOT_SUFFIXES:
        raise ConfigError(f"--plot {out}: use a file ending in {', '.join(PLOT_SUFFIXES)}")
    if out.is_dir():
        raise ConfigError(f"--plot {out}: is a directory; give a file name, e.g. "
                          f"{out / 'study.png'}")
    if not out.parent.is_dir():
        raise ConfigError(f"--plot {out}: folder {out.parent} does not exist")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with_rank = bool(report.rank_distance) and report.setting == Setting.MUL
    panels = report.panels or ((),)
    cols = len(panels)
    width = max(6.5, 4.6 * cols)
    # constrained layout makes room for a (wrapped) suptitle; tight_layout leaves it to the edges.
    fig, axes = plt.subplots(2 if with_rank else 1, cols,
                             figsize=(width, 8.4 if with_rank else 4.6),
                             squeeze=False, sharey="row", layout="constrained")
    metric = MetricName(report.metric).label
    for j, panel in enumerate(panels):
        where = report.panel_label(panel)
        _panel(axes[0][j], report, panel, report.summary, "values",
               f"{Setting(report.setting).long_label} {metric}",
               report.before)
        axes[0][j].set_title(f"{where + ': ' if where else ''}{metric} (mean, 95% CI, dots = "
                             "seeds)", fontsize=9)
        if with_rank:
            _panel(axes[1][j], report, panel, report.rank_distance, "rank_distance",
                   "Mul rank distance (lower = less bias)", report.before_rank)
            axes[1][j].set_title(f"{where + ': ' if where else ''}language bias", fontsize=9)
    scale = "MLQA-R quick subset" if report.subset else "full MLQA-R"
    s = report.setup
    seeds = max((st.n for st in report.summary.values()), default=0)
    title = (f"{report.selection.split(' (')[0]}: {s['model']}, {s['steps']} steps × "
             f"{s['batch size']}, scored on {scale}, up to {seeds} seeds per cell")
    # Wrapped to the figure: one line was wider than a single panel and lost both its ends.
    chars = int(width * 72 / (_CHAR_EM * _TITLE_PT))
    fig.suptitle(textwrap.fill(title, width=chars), fontsize=_TITLE_PT)
    fig.savefig(out, dpi=130)
    plt.close(fig)
    return out

"""The ratio-study plot: metric vs ratio (1:0 … 0:1), one line per resource group, 95% CIs.

matplotlib is imported lazily with the Agg backend, so reports work over SSH with no display.
With the Mul setting a second panel shows the rank distance (language bias) the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.errors import ConfigError
from engine.metric_keys import MACRO, MetricName, Setting, Unit
from engine.report_formats import unit_label
from engine.study import Report, Stat

PLOT_SUFFIXES = (".png", ".svg", ".pdf")


def _panel(ax: Any, report: Report, table: Mapping[tuple[str, Unit], Stat], per_run: str, ylabel: str,
           before: Mapping[Unit, Stat]) -> None:
    xs = list(range(len(report.ratios)))
    if MACRO in before:  # the untrained encoder on the same questions, for scale
        ax.axhline(before[MACRO].mean, color="grey", linestyle=":", label="macro before training")
    heads = [u for u in report.units if u.kind != "lang"]
    for i, unit in enumerate(heads):
        stats = [table.get((r, unit)) for r in report.ratios]
        means = [s.mean if s and s.n else math.nan for s in stats]
        err = [[(s.mean - s.ci_low) if s and s.n > 1 else 0.0 for s in stats],
               [(s.ci_high - s.mean) if s and s.n > 1 else 0.0 for s in stats]]
        shift = (i - (len(heads) - 1) / 2) * 0.06  # keep overlapping error bars apart
        line = ax.errorbar([x + shift for x in xs], means, yerr=err, marker="o", capsize=4,
                           label=unit_label(report, unit), linestyle="--" if unit == MACRO else "-")
        # Individual seeds, so two- or three-seed intervals can be judged by eye.
        for x, ratio in zip(xs, report.ratios):
            vals = [getattr(run, per_run)[unit] for run in report.runs
                    if run.ratio == ratio and unit in getattr(run, per_run)]
            ax.scatter([x + shift] * len(vals), vals, s=10, alpha=0.35, color=line.lines[0].get_color())
    ax.set_xticks(xs, list(report.ratios))
    ax.set_xlabel("mono : cross batch ratio")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def save_plot(report: Report, path: str | Path) -> Path:
    out = Path(path)
    if out.suffix.lower() not in PLOT_SUFFIXES:
        raise ConfigError(f"--plot {out}: use a file ending in {', '.join(PLOT_SUFFIXES)}")
    if not out.parent.exists():
        raise ConfigError(f"--plot {out}: folder {out.parent} does not exist")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with_rank = bool(report.rank_distance) and report.setting == Setting.MUL
    fig, axes = plt.subplots(1, 2 if with_rank else 1, figsize=(11 if with_rank else 6.5, 4.4), squeeze=False)
    metric = MetricName(report.metric).label
    _panel(axes[0][0], report, report.summary, "values", f"{Setting(report.setting).long_label} {metric}",
           report.before)
    axes[0][0].set_title(f"{metric} (mean, 95% CI, dots = seeds)", fontsize=10)
    if with_rank:
        _panel(axes[0][1], report, report.rank_distance, "rank_distance", "Mul rank distance (lower = less bias)",
               report.before_rank)
        axes[0][1].set_title("language bias", fontsize=10)
    scale = "MLQA-R quick subset" if report.subset else "full MLQA-R"
    s = report.setup
    seeds = max((st.n for st in report.summary.values()), default=0)
    fig.suptitle(f"{report.selection.split(' (')[0]}: {s['model']}, {s['steps']} steps × {s['batch size']}, scored on {scale}, up to {seeds} seeds per ratio",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=130)
    plt.close(fig)
    return out

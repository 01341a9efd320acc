"""Render a `Study` as text tables (Markdown, LaTeX, the CLI's Rich tables), CSV or JSON.

Every text format is built from the same `TextTable`s and caption lines, so Markdown, LaTeX,
the terminal and the dashboard's study screen always show the same numbers. Extra factors are
leading columns of every table (one row per level combination and ratio). CSV and JSON carry
every unit (groups, macro and each language) in long form with the factor levels, NaN written
as empty / null. Names stay verbatim here (Markdown only escapes | and line breaks); the
terminal front ends make them safe to print.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import cast

from engine.metric_keys import MACRO, MetricName, Setting, Split, Unit
from engine.study.core import Excluded, Exclusion, Levels, PairedDiff, Stat, Study


class ReportFormat(StrEnum):
    TABLE = "table"  # the CLI's Rich tables
    MD = "md"
    CSV = "csv"
    JSON = "json"
    TEX = "tex"


@dataclass(frozen=True)
class TextTable:
    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def _num(x: float, digits: int) -> str:
    return "–" if not math.isfinite(x) else f"{x:.{digits}f}"


def stat_cell(s: Stat | None, digits: int = 3, ci: bool = True) -> str:
    if s is None or s.n == 0:
        return "–"
    if s.n == 1:
        return f"{_num(s.mean, digits)} (n=1)"
    text = f"{_num(s.mean, digits)} ± {_num(s.sd, digits)}"
    return text + (f" [{_num(s.ci_low, digits)}, {_num(s.ci_high, digits)}]" if ci else "")


def _signed(x: float, digits: int) -> str:
    return "–" if not math.isfinite(x) else f"{x:+.{digits}f}"


def diff_cell(d: PairedDiff | None, digits: int = 3) -> str:
    if d is None or d.n == 0:
        return "–"
    if d.n == 1:
        return f"{_signed(d.mean, digits)} (1 pair)"
    if not math.isfinite(d.p_value):
        p = "p=–"
    else:
        p = "p<0.001" if d.p_value < 0.001 else f"p={d.p_value:.2g}"
    low, high = _signed(d.ci_low, digits), _signed(d.ci_high, digits)
    return f"{_signed(d.mean, digits)} [{low}, {high}] {p}"


def unit_label(report: Study, unit: Unit) -> str:
    if unit.kind == "macro":
        return "macro"
    if unit.kind == "group":
        return unit.name
    return unit.name + ("*" if unit.name in report.zero_shot else "")


def _n_runs(report: Study, panel: Levels, ratio: str) -> int:
    return max((s.n for u in report.units if (s := report.summary.get((panel, ratio, u)))),
               default=0)


def excluded_summary(report: Study, limit: int = 8) -> str:
    """`running #9 (0:1 seed 1, step 120/200); failed #12 (1:1 seed 2, retried as #14)`."""
    groups: dict[str, list[Excluded]] = {}
    for x in report.excluded:
        what = x.status if x.reason == Exclusion.NOT_DONE else x.reason.value
        groups.setdefault(what, []).append(x)
    parts = []
    for what, xs in groups.items():
        shown = ", ".join(f"#{x.experiment_id} ({x.ratio} seed "
                          f"{x.seed}{', ' + x.detail if x.detail else ''})"
                          for x in xs[:limit])
        parts.append(f"{what} {shown}"
                     + (f" and {len(xs) - limit} more" if len(xs) > limit else ""))
    return "; ".join(parts)


def model_line(report: Study) -> str:
    """Which model of each run the numbers are for (train.select)."""
    if report.select == "last":
        return "Model scored: each run's model after its last training step (train.select = last)."
    at = "; quick-subset values at the selected step" if report.source == Split.QUICK else ""
    steps = sorted({r.selected_step for r in report.runs if r.selected_step is not None})
    chosen = (f"; selected steps {', '.join(map(str, steps[:8]))}{' …' if len(steps) > 8 else ''}"
              if steps else "")
    return (f"Model scored: the model each run selected (train.select = {report.select})"
            f"{at}{chosen}.")


def caption(report: Study) -> list[str]:
    """What was measured and how: printed with every table."""
    metric, setting = MetricName(report.metric).label, Setting(report.setting).long_label
    s = report.setup
    where = ("nothing yet (no run counted)" if not report.runs
             else "a QUICK SUBSET of MLQA-R (not the full benchmark)" if report.subset
             else "full MLQA-R")
    lines = [
        (f"MLQA-R {setting} {metric} by mono:cross batch ratio — {report.selection}, scored on "
         f"{where}."),
        (f"Model {s['model']}; {s['steps']} steps × batch {s['batch size']}, mixing {s['mixing']}, "
         f"lr {s['learning rate']}, OT weight {s['OT weight']}; trained on {s['training data']}; "
         f"device {s['device']}, {s['minutes per run']} min per run."),
        model_line(report),
        (f"Scored on: {s['scored on']}; {s['questions / candidates']} questions / candidate "
         "sentences."),
        "Groups: " + "; ".join(f"{g} = {', '.join(m)}" for g, m in report.groups.items())
        + ". Zero-shot languages (not in data.train_langs), marked *: "
        + (", ".join(report.zero_shot) or "none") + ".",
    ]
    if report.factors:
        lines.append("Factors: ratio (rows) × " + " × ".join(
            f"{f} ({', '.join(report.levels[f])})" for f in report.factors)
            + "; seeds are replicates. Each level combination is its own set of cells; "
            + "; ".join(f"Δ {f}: each level − {f}={report.levels[f][0]} at the same ratio"
                        for f in report.factors if len(report.levels[f]) > 1)
            + ", paired by seed.")
    lines += [
        ("Cells: mean ± sd over seeds [95% Student-t interval]; n = runs counted: done runs only, "
         "one per "
         "cell and seed (the newest); running, queued, failed, cancelled and superseded runs are "
         "listed, "
         f"not counted. Δ: ratio − {report.baseline} paired by seed, mean [95% CI], two-sided "
         "paired t-test p; "
         "with 2–3 seeds the intervals are wide."),
        *([("'before training': the same encoder untrained (step-0 evaluation of the same runs, "
            "same "
           "questions), for scale.")] if report.before else []),
    ]
    if report.factors:
        total: dict[str, int] = {}
        for by_status in report.counts.values():
            for st, n in by_status.items():
                total[st] = total.get(st, 0) + n
        lines.append("Runs: " + ", ".join(f"{n} {st}" for st, n in sorted(total.items()))
                     + f"; {len(report.runs)} counted.")
    else:
        order = {r: i for i, r in enumerate(report.ratios)}
        cells = sorted(report.counts, key=lambda c: order.get(c[1], 99))
        lines.append("Runs per ratio: " + "; ".join(
            f"{r} " + ", ".join(f"{n} {st}" for st, n in sorted(report.counts[(p, r)].items()))
            for p, r in cells) + ".")
    if report.excluded:
        lines.append(f"Not counted: {excluded_summary(report)}.")
    if report.tags:
        by_tag: dict[str, list[int]] = {}
        for i, tags in sorted(report.tags.items()):
            for t in tags:
                by_tag.setdefault(t, []).append(i)
        lines.append("Tags: " + "; ".join(f"{t} " + " ".join(f"#{i}" for i in ids)
                                          for t, ids in sorted(by_tag.items())) + ".")
    return lines + [f"Note: {n}" for n in report.notes]


BEFORE = "before training"


def _rows_by_panel(report: Study,
                   make: Callable[[Levels], Sequence[tuple[str, ...]]]) -> tuple[tuple[str, ...],
                                                                                 ...]:
    """Rows of every panel, each prefixed with its factor levels (nothing when there are none)."""
    return tuple((*panel, *row) for panel in report.panels for row in make(panel))


def _before_row(report: Study, table: Mapping[tuple[Levels, Unit], Stat], panel: Levels,
                units: list[Unit],
                digits: int, with_n: bool) -> list[tuple[str, ...]]:
    """The untrained encoder's row (identical across runs: same model, same subset), mean only."""
    mine = {u: s for (p, u), s in table.items() if p == panel}
    if not mine:
        return []
    n = max(s.n for s in mine.values())
    cells = tuple(_num(mine[u].mean, digits) if u in mine else "–" for u in units)
    return [(BEFORE, str(n), *cells)] if with_n else [(BEFORE, *cells)]


def tables(report: Study) -> list[TextTable]:
    """Every table of the study, in reading order; the terminal, Markdown, LaTeX and the
    dashboard's study screen all render these."""
    metric, setting = MetricName(report.metric).label, Setting(report.setting).label
    heads = [u for u in report.units if u.kind != "lang"]
    langs = [u for u in report.units if u.kind == "lang"]
    factors = tuple(report.factors)

    def cells(panel: Levels) -> list[tuple[str, ...]]:
        return _before_row(report, report.before, panel, heads, 3, True) + [
            (r, str(_n_runs(report, panel, r)),
             *(stat_cell(report.summary.get((panel, r, u))) for u in heads))
            for r in report.ratios if (panel, r, MACRO) in report.summary]

    out = [TextTable(f"{setting} {metric} per resource group", (*factors, "ratio", "n",
                                                              *(unit_label(report, u)
                                                                for u in heads)),
                     _rows_by_panel(report, cells))]
    if report.differences:
        def diffs(panel: Levels) -> list[tuple[str, ...]]:
            return [(r, str(report.differences[(panel, r, MACRO)].n),
                     *(diff_cell(report.differences.get((panel, r, u))) for u in heads))
                    for r in report.ratios if (panel, r, MACRO) in report.differences]
        out.append(TextTable(f"Δ {metric} vs {report.baseline} (paired by seed)",
                             (*factors, "ratio", "pairs",
                              *(f"Δ {unit_label(report, u)}" for u in heads)),
                             _rows_by_panel(report, diffs)))
    for i, f in enumerate(factors):
        for b in report.levels[f][1:]:
            mine = [x for x in report.interactions if x.factor == f and x.level_b == b]
            by_cell = {(x.panel, x.ratio, x.unit): x.diff for x in mine}
            others = factors[:i] + factors[i + 1:]
            keys = sorted({(x.panel, x.ratio) for x in mine},
                          key=lambda k: (report.panels.index(k[0]), report.ratios.index(k[1])))
            rows = tuple((*(k[0][:i] + k[0][i + 1:]), k[1], str(by_cell[(*k, MACRO)].n),
                          *(diff_cell(by_cell.get((*k, u))) for u in heads)) for k in keys)
            if rows:
                a = report.levels[f][0]
                out.append(TextTable(f"Δ {metric} {f}={b} − {f}={a} (same ratio, paired by seed)",
                                     (*others, "ratio", "pairs",
                                      *(f"Δ {unit_label(report, u)}" for u in heads)),
                                     rows))
    if report.rank_distance:
        def ranks(panel: Levels) -> list[tuple[str, ...]]:
            return _before_row(report, report.before_rank, panel, heads, 1, True) + [
                (r, str(_n_runs(report, panel, r)),
                 *(stat_cell(report.rank_distance.get((panel, r, u)), digits=1) for u in heads))
                for r in report.ratios if (panel, r, MACRO) in report.summary]
        out.append(TextTable("Mul rank distance (language bias; lower is better)",
                             (*factors, "ratio", "n", *(unit_label(report, u) for u in heads)),
                             _rows_by_panel(report, ranks)))

    def per_lang(panel: Levels) -> list[tuple[str, ...]]:
        return _before_row(report, report.before, panel, langs, 3, False) + [
            (r, *(stat_cell(report.summary.get((panel, r, u)), ci=False) for u in langs))
            for r in report.ratios if (panel, r, MACRO) in report.summary]
    out.append(TextTable(f"{setting} {metric} per query language (mean ± sd; * zero-shot)",
                         (*factors, "ratio", *(unit_label(report, u) for u in langs)),
                         _rows_by_panel(report, per_lang)))
    return out


# --------------------------------------------------------------------------- markdown / latex


def _md_escape(text: str) -> str:
    # Names are kept verbatim, but a | or a line break would split a table row or a list item.
    return text.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def to_markdown(report: Study) -> str:
    lines = [f"### {_md_escape(caption(report)[0])}", ""]
    lines += [f"- {_md_escape(line)}" for line in caption(report)[1:]]
    for t in tables(report):
        lines += ["", f"**{_md_escape(t.title)}**", ""]
        lines.append("| " + " | ".join(map(_md_escape, t.headers)) + " |")
        lines.append("|" + "|".join("---:" if i >= len(t.headers) - _numeric(t) else ":---"
                                    for i in range(len(t.headers))) + "|")
        lines += ["| " + " | ".join(map(_md_escape, row)) + " |" for row in t.rows]
    return "\n".join(lines) + "\n"


def _numeric(t: TextTable) -> int:
    """How many columns on the right hold numbers (the label columns come first)."""
    return len(t.headers) - t.headers.index("ratio") - 1


_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                "\n": " ", "\r": " "}
_TEX_UNICODE = {"±": r"$\pm$", "Δ": r"$\Delta$", "…": r"\ldots{}", "×": r"$\times$", "→": r"$\to$",
                "–": "--", "—": "---", "−": "$-$", "*": r"$^*$"}


def tex_escape(text: str) -> str:
    out = "".join(_TEX_SPECIAL.get(ch, ch) for ch in text)
    return "".join(_TEX_UNICODE.get(ch, ch) for ch in out)


def to_latex(report: Study) -> str:
    """Self-contained `tabular`s (no packages beyond LaTeX itself), captions as comments."""
    lines = [f"% {tex_escape(line)}" for line in caption(report)]
    for t in tables(report):
        labels = len(t.headers) - _numeric(t)
        cols = "l" * labels + "r" * (len(t.headers) - labels)
        lines += ["", r"\begin{table}[t]", r"\centering\small",
                  rf"\caption{{{tex_escape(t.title)}}}",
                  rf"\begin{{tabular}}{{{cols}}}", r"\hline",
                  " & ".join(tex_escape(h) for h in t.headers) + r" \\", r"\hline"]
        lines += [" & ".join(tex_escape(c) for c in row) + r" \\" for row in t.rows]
        lines += [r"\hline", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- csv / json


def _clean(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _unit_dict(report: Study, unit: Unit) -> dict[str, object]:
    return {"unit": unit.kind, "name": unit.name,
            "zero_shot": unit.kind == "lang" and unit.name in report.zero_shot}


def _stat_dict(s: Stat | PairedDiff) -> dict[str, object]:
    return {"n": s.n, "mean": _clean(s.mean), "sd": _clean(s.sd), "ci_low": _clean(s.ci_low),
            "ci_high": _clean(s.ci_high)}


def _diff_dict(d: PairedDiff) -> dict[str, object]:
    return {**_stat_dict(d), "t": _clean(d.t), "p_value": _clean(d.p_value), "seeds": list(d.seeds)}


def to_dict(report: Study) -> dict[str, object]:
    def levels(panel: Levels) -> dict[str, str]:
        return dict(zip(report.factors, panel))

    def stats(table: Mapping[tuple[Levels, str, Unit], Stat], metric: str,
              setting: str) -> list[dict[str, object]]:
        return [{"ratio": r, "factors": levels(p), "metric": metric, "setting": setting,
                 **_unit_dict(report, u),
                 **_stat_dict(s)} for (p, r, u), s in table.items()]

    return {
        "selection": report.selection, "metric": report.metric, "setting": report.setting,
        "source": report.source, "subset": report.subset, "baseline": report.baseline,
        "select": report.select,
        "ratios": list(report.ratios), "factors": list(report.factors),
        "levels": {f: list(v) for f, v in report.levels.items()},
        "panels": [levels(p) for p in report.panels],
        "groups": {g: list(m) for g, m in report.groups.items()},
        "zero_shot": list(report.zero_shot),
        "setup": dict(report.setup), "notes": list(report.notes), "caption": caption(report),
        "counts": [{"ratio": r, "factors": levels(p), "status": dict(c)}
                   for (p, r), c in report.counts.items()],
        "summary": stats(report.summary, report.metric, report.setting),
        "rank_distance": stats(report.rank_distance, MetricName.RANK_DISTANCE, Setting.MUL),
        "before_training": [{"factors": levels(p), "metric": m, "setting": st,
                             **_unit_dict(report, u),
                             **_stat_dict(x)}
                            for table, m, st in ((report.before, report.metric, report.setting),
                                                 (report.before_rank, MetricName.RANK_DISTANCE,
                                                  Setting.MUL))
                            for (p, u), x in table.items()],
        "differences": [
            {"ratio": r, "baseline": report.baseline, "factors": levels(p), "metric": report.metric,
             "setting": report.setting, **_unit_dict(report, u), **_diff_dict(d)}
            for (p, r, u), d in report.differences.items()
        ],
        "interactions": [
            {"factor": x.factor, "level": x.level_b, "reference": x.level_a, "ratio": x.ratio,
             "factors": levels(x.panel), "metric": report.metric, "setting": report.setting,
             **_unit_dict(report, x.unit), **_diff_dict(x.diff)}
            for x in report.interactions
        ],
        "runs": [
            {"experiment_id": run.experiment_id, "ratio": run.ratio, "seed": run.seed,
             "factors": levels(run.levels),
             "tags": list(report.tags.get(run.experiment_id, ())),
             "source": run.source, "step": run.step, "selected_step": run.selected_step,
             "values": {str(u): v for u, v in run.values.items()},
             "rank_distance": {str(u): v for u, v in run.rank_distance.items()}}
            for run in report.runs
        ],
        "excluded": [
            {"experiment_id": x.experiment_id, "ratio": x.ratio, "seed": x.seed,
             "factors": levels(x.levels),
             "tags": list(report.tags.get(x.experiment_id, ())),
             "status": x.status, "reason": x.reason.value, "detail": x.detail}
            for x in report.excluded
        ],
    }


def to_json(report: Study) -> str:
    return json.dumps(to_dict(report), indent=2, allow_nan=False)


CSV_FIELDS = ("section", "ratio", "baseline", "factor", "level", "reference", "setting", "metric",
              "unit", "name",
              "zero_shot", "n", "mean", "sd", "ci_low", "ci_high", "t", "p_value", "source", "note")


def to_csv(report: Study) -> str:
    """Long form: one row per (section, factor levels, ratio, unit), one column per extra factor
    (named by its key, e.g. `ot.weight`); `meta` rows hold the setup as name/note and the
    runs not counted as `excluded` rows."""
    d = to_dict(report)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=(*CSV_FIELDS, *report.factors), extrasaction="ignore",
                       lineterminator="\n")
    w.writeheader()
    for section in ("summary", "rank_distance", "differences", "interactions", "before_training"):
        for row in cast(list[dict[str, object]], d[section]):
            w.writerow({**row, **cast(dict[str, str], row["factors"]), "section": section,
                        "source": report.source})
    for x in report.excluded:
        w.writerow({"section": "excluded", "ratio": x.ratio, "name": f"#{x.experiment_id}",
                    "n": x.seed,
                    "note": " ".join(filter(None, (x.status, x.reason.value, x.detail))),
                    **dict(zip(report.factors, x.levels))})
    meta = {"selection": report.selection, "source": report.source, "subset": str(report.subset),
            "select": report.select, **report.setup,
            **{f"group {g}": " ".join(m) for g, m in report.groups.items()},
            "zero_shot": " ".join(report.zero_shot)}
    for name, value in meta.items():
        w.writerow({"section": "meta", "name": name, "note": value})
    for note in report.notes:
        w.writerow({"section": "meta", "name": "note", "note": note})
    return buf.getvalue()


def render(report: Study, fmt: ReportFormat) -> str:
    """Text of a report in one of md, csv, json, tex (`table` is the CLI's Rich rendering)."""
    renderers = {ReportFormat.MD: to_markdown, ReportFormat.CSV: to_csv, ReportFormat.JSON: to_json,
                 ReportFormat.TEX: to_latex}
    if fmt not in renderers:
        raise ValueError(f"{fmt!r} is not a text format")
    return renderers[ReportFormat(fmt)](report)

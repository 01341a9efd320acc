"""Render a `Report` as text tables (Markdown, LaTeX, the CLI's Rich tables), CSV or JSON.

Every text format is built from the same `TextTable`s and caption lines, so Markdown, LaTeX and
the terminal always show the same numbers. CSV and JSON carry every unit (groups, macro and
each language) in long form, with NaN written as empty / null.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import cast

from engine.metric_keys import MACRO, MetricName, Setting, Unit
from engine.study import PairedDiff, Report, Stat


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
    return f"{_signed(d.mean, digits)} [{_signed(d.ci_low, digits)}, {_signed(d.ci_high, digits)}] {p}"


def unit_label(report: Report, unit: Unit) -> str:
    if unit.kind == "macro":
        return "macro"
    if unit.kind == "group":
        return unit.name
    return unit.name + ("*" if unit.name in report.zero_shot else "")


def _n_runs(report: Report, ratio: str) -> int:
    return max((report.summary[(ratio, u)].n for u in report.units), default=0)


def caption(report: Report) -> list[str]:
    """What was measured and how: printed with every table."""
    metric, setting = MetricName(report.metric).label, Setting(report.setting).long_label
    s = report.setup
    where = "a QUICK SUBSET of MLQA-R (not the full benchmark)" if report.subset else "full MLQA-R"
    lines = [
        f"MLQA-R {setting} {metric} by mono:cross batch ratio — {report.selection}, scored on {where}.",
        (f"Model {s['model']}; {s['steps']} steps × batch {s['batch size']}, mixing {s['mixing']}, "
         f"lr {s['learning rate']}, OT weight {s['OT weight']}; trained on {s['training data']}; "
         f"device {s['device']}, {s['minutes per run']} min per run."),
        f"Scored on: {s['scored on']}; {s['questions / candidates']} questions / candidate sentences.",
        "Groups: " + "; ".join(f"{g} = {', '.join(m)}" for g, m in report.groups.items())
        + ". Zero-shot languages (not in data.train_langs), marked *: "
        + (", ".join(report.zero_shot) or "none") + ".",
        ("Cells: mean ± sd over seeds [95% Student-t interval]; n = done runs. Δ: ratio − "
         f"{report.baseline} paired by seed, mean [95% CI], two-sided paired t-test p; "
         "with 2–3 seeds the intervals are wide."),
        *([("'before training': the same encoder untrained (step-0 evaluation of the same runs, same "
           "questions), for scale.")] if report.before else []),
        "Runs per ratio: " + "; ".join(
            f"{r} " + ", ".join(f"{n} {st}" for st, n in sorted(report.counts.get(r, {}).items()))
            for r in sorted(report.counts, key=lambda r: report.ratios.index(r) if r in report.ratios else 99)
        ) + ".",
    ]
    return lines + [f"Note: {n}" for n in report.notes]


BEFORE = "before training"


def _before_row(table: Mapping[Unit, Stat], units: list[Unit], digits: int, with_n: bool) -> tuple[tuple[str, ...], ...]:
    """The untrained encoder's row (identical across runs: same model, same subset), mean only."""
    if not table:
        return ()
    n = max(s.n for s in table.values())
    cells = tuple(_num(table[u].mean, digits) if u in table else "–" for u in units)
    return ((BEFORE, str(n), *cells),) if with_n else ((BEFORE, *cells),)


def tables(report: Report) -> list[TextTable]:
    metric, setting = MetricName(report.metric).label, Setting(report.setting).label
    heads = [u for u in report.units if u.kind != "lang"]
    langs = [u for u in report.units if u.kind == "lang"]
    out = [TextTable(
        f"{setting} {metric} per resource group",
        ("ratio", "n", *(unit_label(report, u) for u in heads)),
        _before_row(report.before, heads, 3, True)
        + tuple((r, str(_n_runs(report, r)), *(stat_cell(report.summary.get((r, u))) for u in heads))
                for r in report.ratios),
    )]
    if report.differences:
        rows = []
        for r in report.ratios:
            if r == report.baseline:
                continue
            pairs = report.differences[(r, MACRO)].n if (r, MACRO) in report.differences else 0
            rows.append((r, str(pairs), *(diff_cell(report.differences.get((r, u))) for u in heads)))
        out.append(TextTable(f"Δ {metric} vs {report.baseline} (paired by seed)",
                             ("ratio", "pairs", *(f"Δ {unit_label(report, u)}" for u in heads)), tuple(rows)))
    if report.rank_distance:
        out.append(TextTable(
            "Mul rank distance (language bias; lower is better)",
            ("ratio", "n", *(unit_label(report, u) for u in heads)),
            _before_row(report.before_rank, heads, 1, True)
            + tuple((r, str(_n_runs(report, r)),
                     *(stat_cell(report.rank_distance.get((r, u)), digits=1) for u in heads))
                    for r in report.ratios),
        ))
    out.append(TextTable(
        f"{setting} {metric} per query language (mean ± sd; * zero-shot)",
        ("ratio", *(unit_label(report, u) for u in langs)),
        _before_row(report.before, langs, 3, False)
        + tuple((r, *(stat_cell(report.summary.get((r, u)), ci=False) for u in langs)) for r in report.ratios),
    ))
    return out


# --------------------------------------------------------------------------- markdown / latex


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(report: Report) -> str:
    lines = [f"### {caption(report)[0]}", ""]
    lines += [f"- {line}" for line in caption(report)[1:]]
    for t in tables(report):
        lines += ["", f"**{_md_escape(t.title)}**", ""]
        lines.append("| " + " | ".join(map(_md_escape, t.headers)) + " |")
        lines.append("|" + "|".join(":---" if i == 0 else "---:" for i in range(len(t.headers))) + "|")
        lines += ["| " + " | ".join(map(_md_escape, row)) + " |" for row in t.rows]
    return "\n".join(lines) + "\n"


_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_TEX_UNICODE = {"±": r"$\pm$", "Δ": r"$\Delta$", "…": r"\ldots{}", "×": r"$\times$", "→": r"$\to$",
                "–": "--", "—": "---", "−": "$-$", "*": r"$^*$"}


def tex_escape(text: str) -> str:
    out = "".join(_TEX_SPECIAL.get(ch, ch) for ch in text)
    return "".join(_TEX_UNICODE.get(ch, ch) for ch in out)


def to_latex(report: Report) -> str:
    """Self-contained `tabular`s (no packages beyond LaTeX itself), captions as comments."""
    lines = [f"% {tex_escape(line)}" for line in caption(report)]
    for t in tables(report):
        cols = "l" + "r" * (len(t.headers) - 1)
        lines += ["", r"\begin{table}[t]", r"\centering\small", rf"\caption{{{tex_escape(t.title)}}}",
                  rf"\begin{{tabular}}{{{cols}}}", r"\hline",
                  " & ".join(tex_escape(h) for h in t.headers) + r" \\", r"\hline"]
        lines += [" & ".join(tex_escape(c) for c in row) + r" \\" for row in t.rows]
        lines += [r"\hline", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- csv / json


def _clean(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _unit_dict(report: Report, unit: Unit) -> dict[str, object]:
    return {"unit": unit.kind, "name": unit.name, "zero_shot": unit.kind == "lang" and unit.name in report.zero_shot}


def _stat_dict(s: Stat) -> dict[str, object]:
    return {"n": s.n, "mean": _clean(s.mean), "sd": _clean(s.sd), "ci_low": _clean(s.ci_low),
            "ci_high": _clean(s.ci_high)}


def to_dict(report: Report) -> dict[str, object]:
    def stats(table: Mapping[tuple[str, Unit], Stat], metric: str, setting: str) -> list[dict[str, object]]:
        return [{"ratio": r, "metric": metric, "setting": setting, **_unit_dict(report, u), **_stat_dict(s)}
                for (r, u), s in table.items()]

    return {
        "selection": report.selection, "metric": report.metric, "setting": report.setting,
        "source": report.source, "subset": report.subset, "baseline": report.baseline, "ratios": list(report.ratios),
        "groups": {g: list(m) for g, m in report.groups.items()}, "zero_shot": list(report.zero_shot),
        "setup": dict(report.setup), "notes": list(report.notes), "caption": caption(report),
        "counts": {r: dict(c) for r, c in report.counts.items()},
        "summary": stats(report.summary, report.metric, report.setting),
        "rank_distance": stats(report.rank_distance, MetricName.RANK_DISTANCE, Setting.MUL),
        "before_training": [{"metric": m, "setting": st, **_unit_dict(report, u), **_stat_dict(x)}
                            for table, m, st in ((report.before, report.metric, report.setting),
                                                 (report.before_rank, MetricName.RANK_DISTANCE, Setting.MUL))
                            for u, x in table.items()],
        "differences": [
            {"ratio": r, "baseline": report.baseline, "metric": report.metric, "setting": report.setting,
             **_unit_dict(report, u), **_stat_dict(Stat(d.n, d.mean, d.sd, d.ci_low, d.ci_high)),
             "t": _clean(d.t), "p_value": _clean(d.p_value), "seeds": list(d.seeds)}
            for (r, u), d in report.differences.items()
        ],
        "runs": [
            {"experiment_id": run.experiment_id, "ratio": run.ratio, "seed": run.seed, "source": run.source,
             "step": run.step,
             "values": {str(u): v for u, v in run.values.items()},
             "rank_distance": {str(u): v for u, v in run.rank_distance.items()}}
            for run in report.runs
        ],
    }


def to_json(report: Report) -> str:
    return json.dumps(to_dict(report), indent=2, allow_nan=False)


CSV_FIELDS = ("section", "ratio", "baseline", "setting", "metric", "unit", "name", "zero_shot", "n", "mean",
              "sd", "ci_low", "ci_high", "t", "p_value", "source", "note")


def to_csv(report: Report) -> str:
    """Long form: one row per (section, ratio, unit); `meta` rows hold the setup as name/note."""
    d = to_dict(report)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for section in ("summary", "rank_distance", "differences", "before_training"):
        for row in cast(list[dict[str, object]], d[section]):
            w.writerow({**row, "section": section, "source": report.source})
    meta = {"selection": report.selection, "source": report.source, "subset": str(report.subset), **report.setup,
            **{f"group {g}": " ".join(m) for g, m in report.groups.items()},
            "zero_shot": " ".join(report.zero_shot)}
    for name, value in meta.items():
        w.writerow({"section": "meta", "name": name, "note": value})
    for note in report.notes:
        w.writerow({"section": "meta", "name": "note", "note": note})
    return buf.getvalue()


def render(report: Report, fmt: ReportFormat) -> str:
    """Text of a report in one of md, csv, json, tex (`table` is the CLI's Rich rendering)."""
    renderers = {ReportFormat.MD: to_markdown, ReportFormat.CSV: to_csv, ReportFormat.JSON: to_json,
                 ReportFormat.TEX: to_latex}
    if fmt not in renderers:
        raise ValueError(f"{fmt!r} is not a text format")
    return renderers[ReportFormat(fmt)](report)

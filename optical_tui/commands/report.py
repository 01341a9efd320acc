"""`optical report`: the ratio study of a sweep as tables (terminal, md, csv, json, tex) and a
plot."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from engine.errors import ConfigError
from engine.metric_keys import MetricName, Setting
from engine.study.core import Source
from engine.study.formats import ReportFormat
from optical_tui.commands.context import parse_ids, store_for
from optical_tui.commands.options import (
    SweepIdsArgument,
    json_option,
    metric_option,
    plot_option,
    setting_option,
    sweep_option,
    tag_option,
)
from optical_tui.console import console, err_console, safe, safe_text

if TYPE_CHECKING:
    from engine.store import Store
    from engine.study.core import Study
    from engine.study.grouping import Grouping


def _group_keys(group_by: str | None, fmt: ReportFormat) -> tuple[str, ...]:
    from engine.study.grouping import parse_group_keys

    if group_by is None:
        return ()
    if fmt not in (ReportFormat.TABLE, ReportFormat.MD, ReportFormat.JSON):
        raise ConfigError(f"--group-by prints a table, md or json, not {fmt}")
    return parse_group_keys(group_by)


def _grouping(store: Store, rep: Study, keys: tuple[str, ...]) -> Grouping | None:
    from engine.study.grouping import group_study

    if not keys:
        return None
    return group_study(rep, store.list_experiments(ids=[r.experiment_id for r in rep.runs]), keys)


def _render(rep: Study, fmt: ReportFormat, grouped: Grouping | None) -> str:
    from engine.study.formats import caption, render, to_dict
    from engine.study.grouping import grouping_dict, grouping_markdown

    if grouped is None:
        return render(rep, fmt)
    if fmt == ReportFormat.JSON:
        return json.dumps({**to_dict(rep), "group_by": grouping_dict(grouped)}, indent=2,
                          allow_nan=False)
    head = [f"### {caption(rep)[0]}", "", *(f"- {line}" for line in caption(rep)[1:]), ""]
    return "\n".join(head) + "\n" + grouping_markdown(grouped, rep)


def print_report(report: Study, grouped: Grouping | None = None) -> None:
    """The Rich rendering: caption lines, then the same tables the Markdown export holds (or the
    grouping's table). Every string goes out as Text (no markup) through `safe`: names and
    config values are stored verbatim and may hold anything."""
    from engine.study.formats import caption, tables
    from engine.study.grouping import grouping_table

    lines = caption(report)
    console.print(safe_text(lines[0], "bold"))
    for line in lines[1:]:
        style = "yellow" if line.startswith(("Note:",
                                             "Not counted:")) or "QUICK SUBSET" in line else ""
        console.print(safe_text(line, style))
    for t in tables(report) if grouped is None else [grouping_table(grouped, report)]:
        table = Table(title=safe_text(t.title), title_justify="left", header_style="bold",
                      show_edge=False)
        labels = t.headers.index("ratio") + 1 if grouped is None else len(grouped.keys)
        for i, h in enumerate(t.headers):
            table.add_column(safe_text(h), justify="left" if i < labels else "right")
        for row in t.rows:
            table.add_row(*(safe_text(c) for c in row))
        console.print()
        console.print(table)


_METRIC_HELP = ("Per-query metric, averaged over queries (rank distance has its own table with "
                "--setting mul).")
_SETTING_HELP = "mo (X→X), cr (X→Y) or mul (X→all languages)."
_FORMAT_HELP = "table (terminal), md, csv, json or tex."
_PLOT_HELP = "Also save the metric-vs-ratio plot (.png, .svg or .pdf)."
_OUTPUT_HELP = "Write the md/csv/json/tex text to this file instead of stdout."
_SOURCE_HELP = ("auto (the full benchmark when every run has it, else the last quick-subset "
                "evaluation), full, or eval (the quick subset).")
_BASELINE_HELP = "Ratio the paired differences are taken against."
_GROUP_BY_HELP = ("Group the counted runs by config keys (e.g. ot.weight,train.mixing) or ratio, "
                  "seed, name, tags: n, mean ± sd and 95% interval per group (table, md or json).")
_TAG_HELP = ("Only runs with this tag (repeatable: all of them); without --sweep or ids, every "
             "tagged run.")


def report(
    ctx: typer.Context,
    ids: SweepIdsArgument = None,
    sweep: Annotated[str | None, sweep_option("Sweep name (as given to queue add --name).")] = None,
    metric: Annotated[MetricName, metric_option(_METRIC_HELP)] = MetricName.MAP,
    setting: Annotated[Setting, setting_option(_SETTING_HELP)] = Setting.MUL,
    fmt: Annotated[ReportFormat,
                   typer.Option("--format", "-f", help=_FORMAT_HELP)] = ReportFormat.TABLE,
    plot: Annotated[Path | None, plot_option(_PLOT_HELP)] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help=_OUTPUT_HELP)] = None,
    source: Annotated[Source, typer.Option("--source", help=_SOURCE_HELP)] = Source.AUTO,
    baseline: Annotated[str, typer.Option("--baseline", help=_BASELINE_HELP)] = "1:1",
    group_by: Annotated[str | None, typer.Option("--group-by", "-g", metavar="KEY[,KEY]",
                                                 help=_GROUP_BY_HELP)] = None,
    tags: Annotated[list[str] | None, tag_option(_TAG_HELP)] = None,
    as_json: Annotated[bool, json_option("Print JSON (the same as --format json).")] = False,
) -> None:
    """Per ratio (and level of each --sweep factor), group and language: mean, sd and 95% interval
    over seeds; paired differences from the baseline ratio and between factor levels.

    Only done runs count, one per cell and seed (the newest); running, queued, failed, cancelled
    and superseded runs are listed under "Not counted". The dashboard's study screen computes
    the same study from the same rules (engine/study/core.py)."""
    from engine.study.core import build_report
    from engine.tags import parse_tags

    fmt = _json_format(fmt) if as_json else fmt
    keys = _group_keys(group_by, fmt)
    _check_output(output, fmt)
    with store_for(ctx) as store:
        rep = build_report(store, sweep=sweep, ids=parse_ids(ids or []), metric=metric,
                           setting=setting, source=source, baseline=baseline,
                           tags=parse_tags(tags or []))
        grouped = _grouping(store, rep, keys)
    if fmt == ReportFormat.TABLE:
        print_report(rep, grouped)
    else:
        _write_text(_render(rep, fmt, grouped), output)
    if plot is not None:
        from engine.study.plot import save_plot

        err_console.print(safe_text(f"wrote plot {save_plot(rep, plot)}"))



def _json_format(fmt: ReportFormat) -> ReportFormat:
    """--json: the same as --format json, refused beside another --format."""
    if fmt not in (ReportFormat.TABLE, ReportFormat.JSON):
        raise ConfigError(f"--json and --format {fmt} disagree; give one of them")
    return ReportFormat.JSON


def _check_output(output: Path | None, fmt: ReportFormat) -> None:
    """--output: a writable file name for a text format (else one error line)."""
    if output is not None and fmt == ReportFormat.TABLE:
        raise ConfigError("--output needs a text format: --format md, csv, json or tex")
    if output is not None and output.is_dir():
        raise ConfigError(f"--output {output}: is a directory; give a file name, e.g. "
                          f"{output / ('study.' + fmt)}")
    if output is not None and not output.parent.is_dir():
        raise ConfigError(f"--output {output}: folder {output.parent} does not exist")


def _write_text(text: str, output: Path | None) -> None:
    if output is not None:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:  # read-only folder, disk full: one line, not a traceback
            raise ConfigError(f"--output {output}: cannot write: "
                              f"{exc.strerror or exc}") from None
        err_console.print(safe_text(f"wrote {output}"))
    else:
        # Plain print: scripts parse this. Names stay verbatim for a pipe or a file, but a
        # terminal never receives their control characters raw.
        print(safe(text, lines=True) if sys.stdout.isatty() else text, end="")

def register(app: typer.Typer) -> None:
    app.command("report")(report)

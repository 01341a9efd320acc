"""`optical report`: the ratio study of a sweep as tables (terminal, md, csv, json, tex) and a plot."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from engine.errors import ConfigError
from optical_tui.common import console, err_console, open_store, parse_ids

if TYPE_CHECKING:
    from engine.report import Report

FORMATS = ("table", "md", "csv", "json", "tex")


def print_report(report: Report) -> None:
    """The Rich rendering: caption lines, then the same tables the Markdown export holds."""
    from engine.report_formats import caption, tables

    lines = caption(report)
    console.print(f"[bold]{lines[0]}[/bold]", markup=True, highlight=False)
    for line in lines[1:]:
        style = "yellow" if line.startswith("Note:") or "QUICK SUBSET" in line else None
        console.print(line, style=style, markup=False)
    for t in tables(report):
        table = Table(title=t.title, title_justify="left", header_style="bold", show_edge=False)
        for i, h in enumerate(t.headers):
            table.add_column(h, justify="left" if i == 0 else "right")
        for row in t.rows:
            table.add_row(*row)
        console.print()
        console.print(table)


def report(
    ctx: typer.Context,
    ids: Annotated[list[str] | None, typer.Argument(metavar="ID", help="Experiment ids (default: the newest sweep).")] = None,
    sweep: Annotated[str | None, typer.Option("--sweep", "-n", help="Sweep name (as given to queue add --name).")] = None,
    metric: Annotated[str, typer.Option("--metric", "-m", help="map, r@1, r@10, mrr@10 or ndcg@10.")] = "map",
    setting: Annotated[str, typer.Option("--setting", "-s", help="mo (X→X), cr (X→Y) or mul (X→all languages).")] = "mul",
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, md, csv, json or tex.")] = "table",
    plot: Annotated[Path | None, typer.Option("--plot", help="Also save the metric-vs-ratio plot (.png, .svg or .pdf).")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the md/csv/json/tex text to this file instead of stdout.")] = None,
    source: Annotated[str, typer.Option("--source", help="auto (full/… when every run has it, else eval/…), full, or eval (the last quick-curve point).")] = "auto",
    baseline: Annotated[str, typer.Option("--baseline", help="Ratio the paired differences are taken against.")] = "1:1",
) -> None:
    """Per ratio, group and language: mean, sd and 95% interval over seeds; paired differences from 1:1."""
    from engine.report import build_report
    from engine.report_formats import render

    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: valid formats are {', '.join(FORMATS)}")
    if output is not None and fmt == "table":
        raise ConfigError("--output needs a text format: --format md, csv, json or tex")
    if output is not None and not output.parent.exists():
        raise ConfigError(f"--output {output}: folder {output.parent} does not exist")
    with open_store(ctx) as store:
        rep = build_report(store, sweep=sweep, ids=parse_ids(ids or []), metric=metric, setting=setting,
                           source=source, baseline=baseline)
    if fmt == "table":
        print_report(rep)
    else:
        text = render(rep, fmt)
        if output is not None:
            output.write_text(text, encoding="utf-8")
            err_console.print(f"wrote {output}")
        else:
            print(text, end="")  # plain print: scripts parse this
    if plot is not None:
        from engine.report_plot import save_plot

        err_console.print(f"wrote plot {save_plot(rep, plot)}")


def register(app: typer.Typer) -> None:
    app.command("report")(report)

"""`optical compare ID ID…`: what differs between runs, and their final numbers side by side."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from engine.metric_keys import MetricName, Setting, Split
from optical_tui.commands.context import parse_ids, store_for
from optical_tui.commands.options import json_option, metric_option, setting_option
from optical_tui.console import console, safe_text

if TYPE_CHECKING:
    from engine.study.compare import Comparison, ValueRow


def _number(v: float | None, key: str) -> str:
    if v is None:
        return "–"
    return f"{v:.2f}" if key.endswith(MetricName.RANK_DISTANCE) else f"{v:.4f}"


def _delta(v: float | None, key: str) -> Text:
    if v is None:
        return Text("")
    text = f"{v:+.2f}" if key.endswith(MetricName.RANK_DISTANCE) else f"{v:+.4f}"
    return Text(f"({text})", style="dim" if v == 0 else "green" if v > 0 else "red")


def _values_table(c: Comparison, title: str, rows: Sequence[ValueRow], first: str) -> Table:
    table = Table(
        title=safe_text(title), title_justify="left", header_style="bold", show_edge=False
    )
    table.add_column(first)
    for i in range(len(c.runs)):
        table.add_column(safe_text(c.label(i)), justify="right")
    for r in rows:
        cells = [Text(_number(r.values[0], r.key))]
        cells += [
            Text.assemble(_number(v, r.key), " ", _delta(d, r.key))
            for v, d in zip(r.values[1:], r.deltas[1:], strict=True)
        ]
        table.add_row(safe_text(r.label), *cells)
    return table


def print_comparison(c: Comparison) -> None:
    runs = Table(title="runs", title_justify="left", header_style="bold", show_edge=False)
    for col in ("id", "name", "ratio", "seed", "status", "tags", "note"):
        runs.add_column(col)
    for e in c.runs:
        runs.add_row(
            str(e.id),
            safe_text(e.name),
            e.ratio,
            str(e.seed),
            e.status.value,
            safe_text(" ".join(e.tags) or "-"),
            safe_text(e.note.splitlines()[0] if e.note else "-"),
        )
    console.print(runs)
    console.print()
    if c.differing:
        diff = Table(
            title=f"config: {len(c.differing)} key(s) differ, {c.same} the same",
            title_justify="left",
            header_style="bold",
            show_edge=False,
        )
        diff.add_column("key")
        for i in range(len(c.runs)):
            diff.add_column(safe_text(c.label(i)))
        for key, values in c.differing.items():
            diff.add_row(safe_text(key), *(safe_text(v) for v in values))
        console.print(diff)
    else:
        console.print(f"config: all {c.same} keys are the same")
    source = "full benchmark" if c.source == Split.FULL else "last quick-subset evaluation (eval/…)"
    if not c.final:
        console.print(safe_text(f"\nno final metrics yet ({source})", "yellow"))
        return
    console.print()
    console.print(
        _values_table(c, f"final metrics ({source}; Δ from #{c.runs[0].id})", c.final, "metric")
    )
    if c.languages:
        console.print()
        name = f"{Setting(c.setting).label} {MetricName(c.metric).label}"
        console.print(
            _values_table(c, f"{name} per query language (* zero-shot)", c.languages, "query lang")
        )


def compare_command(
    ctx: typer.Context,
    ids: Annotated[
        list[str],
        typer.Argument(
            metavar="ID ID...",
            help="Two or more experiment ids; the first is the reference for the deltas.",
        ),
    ],
    metric: Annotated[
        MetricName, metric_option("Per-query metric of the final and per-language tables.")
    ] = MetricName.MAP,
    setting: Annotated[
        Setting, setting_option("Setting of the per-language table: mo, cr or mul.")
    ] = Setting.MUL,
    as_json: Annotated[bool, json_option("Print the comparison as JSON.")] = False,
) -> None:
    """Compare runs: the config keys that differ, the final metrics side by side with deltas from
    the first run, and a per-query-language table. Values come from the full benchmark when every
    run has it, else from each run's last quick-subset evaluation (as in `optical report`)."""
    from engine.study.compare import load_comparison, to_json

    with store_for(ctx) as store:
        c = load_comparison(store, parse_ids(ids), metric=metric, setting=setting)
    if as_json:
        print(to_json(c))
    else:
        print_comparison(c)


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_command)

"""`optical db check`: integrity and schema version of the experiments database."""

from __future__ import annotations

from typing import Annotated

import typer

from optical_tui.common import console, open_store, print_json

db_app = typer.Typer(help="Inspect the experiments database.", no_args_is_help=True)


@db_app.command("check")
def check(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Run SQLite's integrity check and report the schema version and row counts."""
    with open_store(ctx) as store:
        report = store.check()
    if as_json:
        print_json(report)
    else:
        status = "[green]ok[/green]" if report["ok"] else "[red]PROBLEMS[/red]"
        console.print(f"{report['path']}: {status}")
        console.print(f"  schema version {report['schema_version']} (this optical-tui: "
                      f"{report['supported_schema_version']}), journal {report['journal_mode']}")
        counts = ", ".join(f"{k} {v}" for k, v in report["experiments"].items())
        console.print(f"  experiments: {counts}; metrics {report['metrics']}; events {report['events']}")
        if not report["ok"]:
            for line in report["integrity"]:
                console.print(f"  [red]{line}[/red]", markup=True)
    if not report["ok"]:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")

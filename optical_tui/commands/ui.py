"""`optical ui` and `optical-tui`: the dashboard. Its options are defined once, here."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from engine.errors import OpticalError
from engine.store import open_store, resolve_location, sqlite_path
from optical_tui.commands.context import db_location
from optical_tui.commands.options import DbOption

PollOption = Annotated[float,
                       typer.Option("--poll", help="Seconds between database polls.", min=0.05)]


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def _new_database(db: str) -> None:
    """Opening a path with no database creates one: ask first in a terminal, else say so. A typo
    in --db (or a dashboard started in the wrong folder) otherwise shows an empty queue silently."""
    path = sqlite_path(db)
    if path is None or path.exists():
        return
    others = sorted(p.name for p in path.resolve().parent.glob("*.db"))[:5]
    here = f" (databases in that folder: {', '.join(others)})" if others else ""
    if _interactive():
        if not typer.confirm(f"No database at {path}{here}. Create an empty one?", default=False):
            print(f"error: no database at {path}; nothing created. Open one with --db PATH or "
                  "OPTICAL_DB", file=sys.stderr)
            raise typer.Exit(1)
        return
    print(f"note: no database at {path}: created an empty one{here}", file=sys.stderr)


def open_dashboard(db: str, poll: float) -> None:
    try:
        _new_database(db)
        # Fail with one clear line (directory, not a database, newer schema, unreachable server)
        # before the screen opens.
        open_store(db).close()
    except OpticalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    from optical_tui.app import OpticalApp  # Textual loads only when the dashboard is asked for

    OpticalApp(db, poll).run()


def ui(ctx: typer.Context, poll: PollOption = 1.0) -> None:
    """Open the live dashboard: queue, per-language curves, ratio study (same as optical-tui)."""
    open_dashboard(db_location(ctx), poll)


def _standalone(db: DbOption = None, poll: PollOption = 1.0) -> None:
    """Live dashboard for the experiment queue (same as `optical ui`)."""
    open_dashboard(resolve_location(db), poll)


def main() -> None:
    """The `optical-tui` entry point."""
    typer.run(_standalone)


def register(app: typer.Typer) -> None:
    app.command("ui")(ui)

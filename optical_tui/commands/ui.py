"""`optical ui`: the dashboard, the same app as `optical-tui`."""

from __future__ import annotations

from typing import Annotated

import typer

from optical_tui.common import db_path


def ui(
    ctx: typer.Context,
    poll: Annotated[float, typer.Option("--poll", help="Seconds between database polls.", min=0.05)] = 1.0,
) -> None:
    """Open the live dashboard: queue, per-language curves, ratio study (same as optical-tui)."""
    from optical_tui.app import run  # Textual loads only when the dashboard is asked for

    run(db_path(ctx), poll)


def register(app: typer.Typer) -> None:
    app.command("ui")(ui)

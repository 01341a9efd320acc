"""The `optical` command line: thin Typer commands over `engine`.

Command modules live in `optical_tui/commands/`; each exposes `register(app)`. Errors a user
can cause (`OpticalError`) become one line on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from engine.errors import OpticalError
from optical_tui.commands.ui import DB_HELP
from optical_tui.console import safe

# Typer vendors click; its UsageError is the base of BadParameter (bad values, missing arguments).
_USAGE_ERROR: Any = typer.BadParameter.__mro__[1]


class OpticalGroup(TyperGroup):
    """Root group: turns the engine's error family into one clear line."""

    # Any: Typer vendors its own click, whose Context type is private.
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except OpticalError as exc:
            # Plain print: Rich would wrap long messages and interpret [brackets] as markup. `safe`:
            # a message may quote a stored name; its control characters (and newlines: one line)
            # are shown escaped, never sent to the terminal.
            print(f"error: {safe(str(exc))}", file=sys.stderr)
            raise typer.Exit(1) from None
        except _USAGE_ERROR as exc:
            # A bad option value (an unknown --status, a non-integer seed): the same one line and
            # exit status as any other bad input, with the command to ask for help.
            where = exc.ctx.command_path if exc.ctx is not None else "optical"
            print(f"error: {safe(exc.format_message())} (see: {safe(where)} --help)", file=sys.stderr)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise typer.Exit(130) from None


app = typer.Typer(
    cls=OpticalGroup,
    name="optical",
    help="Queue, run and report hybrid-batch + OT-distillation experiments on MLQA-R.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(
    ctx: typer.Context,
    db: Annotated[
        str | None,
        typer.Option("--db", help=DB_HELP, envvar="OPTICAL_DB", show_default=False),
    ] = None,
) -> None:
    ctx.obj = {"db": db}


def _register_all() -> None:
    from optical_tui.commands import COMMAND_MODULES

    for module in COMMAND_MODULES:
        module.register(app)


_register_all()


def main() -> None:
    app()

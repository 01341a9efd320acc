"""The `optical` command line: thin Typer commands over `engine`.

Command modules live in `optical_tui/commands/`; each exposes `register(app)`. Errors a user
can cause (`OpticalError`) become one line on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import difflib
import sys
from typing import Any

import typer
from typer.core import TyperGroup

from engine.errors import OpticalError
from optical_tui.commands.options import DbOption
from optical_tui.console import safe

# Typer vendors click; its UsageError is the base of BadParameter (bad values, missing arguments).
_USAGE_ERROR: Any = typer.BadParameter.__mro__[1]


#: Words users type for a command that lives under a group (`optical status`): where to look.
_ALSO_MEANT = {"status": ("queue list",), "ls": ("queue list",), "list": ("queue list",),
               "workers": ("worker status",), "dashboard": ("ui",), "tui": ("ui",)}


def _nested_names(group: Any, ctx: Any) -> list[str]:
    """`queue add`, `worker status`, …: every command one level down, as typed after `optical`."""
    names = []
    for name in group.list_commands(ctx):
        sub = group.get_command(ctx, name)
        if sub is not None and hasattr(sub, "list_commands"):
            names += [f"{name} {child}" for child in sub.list_commands(ctx)]
    return names


def suggest(group: Any, ctx: Any, typed: str) -> list[str]:
    """Commands a mistyped `optical WORD` may have meant: a subcommand of that name (`status`:
    `worker status`), a close top-level or nested name, and the usual words for a command."""
    nested = _nested_names(group, ctx)
    exact = [n for n in nested if n.split()[-1] == typed]
    close = difflib.get_close_matches(typed, group.list_commands(ctx), n=2, cutoff=0.7)
    leaves = {n.split()[-1]: n for n in nested}
    close += [leaves[m] for m in difflib.get_close_matches(typed, list(leaves), n=2, cutoff=0.75)]
    return list(dict.fromkeys([*_ALSO_MEANT.get(typed, ()), *exact, *close]))[:3]


class OpticalGroup(TyperGroup):
    """Root group: turns the engine's error family into one clear line."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        try:
            return super().resolve_command(ctx, args)
        except _USAGE_ERROR as exc:
            typed = args[0] if args else ""
            hints = suggest(self, ctx, typed) if typed and not typed.startswith("-") else []
            if not hints:
                raise
            # Click offers only close top-level names; `optical status` means `worker status`.
            meant = " or ".join(f"'optical {h}'" for h in hints)
            message = f"No such command {typed!r}. Did you mean {meant}?"
            raise _USAGE_ERROR(message, ctx=exc.ctx) from None

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
            print(f"error: {safe(exc.format_message())} (see: {safe(where)} --help)",
                  file=sys.stderr)
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
def _root(ctx: typer.Context, db: DbOption = None) -> None:
    ctx.obj = {"db": db}


def _register_all() -> None:
    from optical_tui.commands import COMMAND_MODULES

    for module in COMMAND_MODULES:
        module.register(app)


_register_all()


def main() -> None:
    app()

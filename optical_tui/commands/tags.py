"""`optical tag ID… +x -y` and `optical note ID "text"`: the user's own labels on experiments."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from engine.errors import ConfigError
from optical_tui.commands.context import parse_ids, store_for
from optical_tui.commands.options import ExperimentIdArgument, json_option
from optical_tui.console import console, print_json, safe, safe_text


def tag(
    ctx: typer.Context,
    words: Annotated[
        list[str],
        typer.Argument(
            metavar="ID... [+TAG|-TAG]... [--json]",
            help="Experiment ids, then +TAG to add and -TAG to remove (a bare TAG adds); "
            "--json anywhere prints each experiment's tags as JSON.",
            show_default=False,
        ),
    ],
) -> None:
    """Add and remove tags, e.g. `optical tag 12 13 +baseline -draft`; with ids only, show their
    tags. Tags are words (letters, digits, _ . : / = @ -); `queue list --tag`, `report --tag`
    and the dashboard's search filter by them. Changes are logged as events."""
    from engine.tags import parse_changes

    # Everything after the first id arrives here unparsed (see register): "-draft" is a tag to
    # remove, not a cluster of short options (-d -r -a -f -t, or -h for help).
    as_json = "--json" in words
    words = [w for w in words if w != "--json"]
    if "--help" in words:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)
    ids = [w for w in words if w.isdigit()]
    changes = [w for w in words if not w.isdigit()]
    if not ids:
        raise ConfigError(
            "give the experiment ids first, then the changes, e.g. optical tag 12 +baseline"
        )
    if words[: len(ids)] != ids:
        raise ConfigError(
            "give the experiment ids first, then the changes, e.g. optical tag 12 13 +x -y"
        )
    with store_for(ctx) as store:
        if changes:
            add, remove = parse_changes(changes)
            exps = store.retag(parse_ids(ids), add, remove)
        else:
            exps = [store.get(i) for i in parse_ids(ids)]
    if as_json:
        print_json([{"id": e.id, "tags": list(e.tags)} for e in exps])
        return
    for e in exps:
        console.print(
            Text.assemble(
                f"#{e.id} ",
                safe_text(e.name, "bold"),
                "  tags: ",
                safe_text(" ".join(e.tags) or "(none)"),
            )
        )


def note(
    ctx: typer.Context,
    exp_id: ExperimentIdArgument,
    text: Annotated[
        str | None,
        typer.Argument(
            metavar="[TEXT]",
            help='The note; "" clears it. Without it, print the note.',
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, json_option("Print the note as JSON.")] = False,
) -> None:
    """Set (or show) an experiment's note, e.g. `optical note 12 "lr too high, diverged at 3k"`.
    Shown by `queue show`, `compare` and the dashboard; `queue list --search` finds it."""
    from engine.tags import check_note

    (i,) = parse_ids([exp_id])
    with store_for(ctx) as store:
        e = store.get(i) if text is None else store.annotate(i, check_note(text))
    if as_json:
        print_json({"id": e.id, "note": e.note})
    elif e.note:
        print(safe(e.note, lines=True))
    elif text is None:
        console.print(f"#{e.id} has no note")
    else:
        console.print(f"#{e.id}: note cleared")


def register(app: typer.Typer) -> None:
    # -TAG must reach the command as an argument, not be read as options: after the first id,
    # click parses nothing (and a first word that looks like an option is refused by click).
    app.command(
        "tag", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False}
    )(tag)
    app.command("note")(note)

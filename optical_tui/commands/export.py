"""`optical export ID DIR`: copy a run's saved model out as a standalone folder.

A run with `train.save_model = true` writes its selected student (`train.select`) to its run
folder (engine/models/export.py); this command finds that folder through the store and copies it to
DIR with a model card (README.md: Hub metadata, training settings, MLQA-R table;
engine/models/model_card.py). DIR is what `SentenceTransformer(DIR)`,
`AutoModel.from_pretrained(DIR)` and `optical eval --model DIR` load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from engine.errors import ModelError
from engine.models.export import copy_model, find_model, read_info
from engine.models.model_card import model_card
from engine.run_dirs import folders_of, runs_root
from engine.statuses import Status
from optical_tui.commands.context import db_location, parse_ids, store_for
from optical_tui.commands.options import json_option, runs_dir_option
from optical_tui.console import console, print_json

_RUNS_DIR_HELP = ("Where the worker kept its runs (env OPTICAL_RUNS; default: <name>.runs/ beside "
                  "an SQLite <name>.db, ./runs for a database server). The folder the run "
                  "recorded is tried first.")


def export_command(
    ctx: typer.Context,
    experiment: Annotated[str,
                          typer.Argument(metavar="ID",
                                         help="Experiment id (see `optical queue list`).",
                                               show_default=False)],
    dest: Annotated[Path,
                    typer.Argument(metavar="DIR",
                                   help="New folder for the model (must not exist, or be empty).",
                                         show_default=False)],
    runs_dir: Annotated[str | None, runs_dir_option(_RUNS_DIR_HELP)] = None,
    as_json: Annotated[bool, json_option("Print where the model went, as JSON.")] = False,
) -> None:
    """Copy the model a run saved (train.save_model = true; the step train.select chose) to DIR.

    DIR also gets a model card, README.md: Hugging Face metadata, how the run trained, its MLQA-R
    table."""
    (exp_id,) = parse_ids([experiment])
    location = db_location(ctx)
    with store_for(ctx) as store:
        exp = store.get(exp_id)
        values = {(m.key, m.step): m.value for m in store.metrics(exp_id)}
    folders = folders_of(exp, runs_root(location, runs_dir))
    src = next((m for f in folders if (m := find_model(f)) is not None), None)
    if src is None:
        why = ("its config has train.save_model = false (queue it again with --set "
               "train.save_model=true)"
               if not exp.config.get("train", {}).get("save_model") else
               f"it is {exp.status}, and a run saves its model when it is done"
               if exp.status != Status.DONE else
               "no saved model was found under " + ", ".join(map(str, folders))
               + " (another --runs-dir?)")
        raise ModelError(f"experiment {exp_id} has no saved model: {why}")
    card = model_card(exp, values, read_info(src) or {})
    out = copy_model(src, dest, extra_files={"README.md": card})
    info = read_info(out) or {}
    if as_json:
        print_json({"experiment": exp_id, "path": str(out.resolve()), "source": str(src),
                    "select": info.get("select"), "selected_step": info.get("selected_step")})
        return
    console.print(f"experiment {exp_id}: model of step {info.get('selected_step')} "
                  f"(train.select = {info.get('select')}) copied to {out}", markup=False)
    console.print(f"load it with SentenceTransformer({str(out)!r}) or evaluate it: optical eval "
                  f"--model {out}",
                  markup=False)


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)

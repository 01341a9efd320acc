"""`optical data check` and `optical data download`: what benchmark data is here, and fetching
it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from optical_tui.commands.options import DATA_DIR_HELP, MachineJsonOption, data_dir_option
from optical_tui.console import console, print_json

data_app = typer.Typer(help="Check or download the benchmark and training data.",
                       no_args_is_help=True)

_STATUS_STYLE = {"ok": "green", "missing": "red", "malformed": "red", "unexpected counts": "yellow"}


def _fmt(value: object) -> str:
    return "" if value is None else str(value)


def missing_folder_hint(root: Path, *, from_option: bool) -> str:
    """Why a data folder that does not exist was looked at, and how to point at the real one
    (`make` sets OPTICAL_DATA; a plain `pip install -e .` does not, so ./data is used)."""
    if from_option:
        why = "given by --data-dir"
    elif os.environ.get("OPTICAL_DATA"):
        why = f"OPTICAL_DATA={os.environ['OPTICAL_DATA']}"
    else:
        why = ("OPTICAL_DATA is not set, so ./data in the current folder was used: `make` sets it, "
               "pip does not")
    return (f"the data folder {root} does not exist ({why}). Point at the data with "
            "`export OPTICAL_DATA=/path/to/data` (the folder holding mlqa-r/, xquad-r/, …; `make` "
            "uses ../shared/data), or fetch it with `optical data download`.")


_CHECK_HELP = ("Report, per dataset and language, whether the files are present, parse, and "
               "have the published counts.\n"
               "\n"
               "Exits 1 when anything is missing, malformed or has unexpected counts.")


@data_app.command("check", help=_CHECK_HELP)
def check(
    data_dir: Annotated[Path | None, data_dir_option(DATA_DIR_HELP)] = None,
    as_json: MachineJsonOption = False,
) -> None:
    from engine.data.loaders import HINT, data_status, resolve_data_dir

    root = resolve_data_dir(str(data_dir) if data_dir else "")
    rows = data_status(root)
    ok = all(r["status"] == "ok" for r in rows)
    folder = None if root.is_dir() else missing_folder_hint(root, from_option=data_dir is not None)
    if as_json:
        print_json({"data_dir": str(root), "ok": ok, "datasets": rows, "data_dir_missing": folder})
    else:
        from rich.table import Table

        table = Table(title=f"data in {root}", title_justify="left")
        for col in ("dataset", "lang", "status", "questions", "candidates", "pairs"):
            table.add_column(col,
                             justify="right" if col in ("questions", "candidates", "pairs")
                             else "left")
        for r in rows:
            style = _STATUS_STYLE.get(r["status"], "")
            table.add_row(r["dataset"], r["lang"], f"[{style}]{r['status']}[/{style}]",
                          _fmt(r["questions"]), _fmt(r["candidates"]), _fmt(r["pairs"]))
        console.print(table)
        for r in rows:
            if r.get("cjk_spaced_answers") is not None:
                use = ("removed from training text" if r["dataset"] == "xquad-r"
                       else "evaluation text, kept as is")
                console.print(f"{r['dataset']}/{r['lang']}: {r['cjk_spaced_answers']} of "
                              f"{r['answers']} distinct "
                              f"answer sentences have spaces between CJK characters ({use})",
                              markup=False)
        for r in rows:
            if r["status"] != "ok" and folder is None:
                console.print(f"{r['dataset']}/{r['lang']}: "
                              f"{r['error'] or r['status'] + ': ' + r['path']}",
                              markup=False)
        if folder is not None:  # one cause for every row above: say it, not 20 missing files
            console.print(folder, markup=False)
        elif not ok:
            console.print(f"to fix: {HINT}", markup=False)
    if not ok:
        raise typer.Exit(1)


@data_app.command("download")
def download(
    dest: Annotated[Path | None, data_dir_option(DATA_DIR_HELP, "--dest")] = None,
    force: Annotated[bool,
                     typer.Option("--force",
                                  help="Re-download files that are already present.")] = False,
) -> None:
    """Fetch MLQA-R, XQuAD-R (LAReQA), XQuAD (DeepMind) and Tatoeba (LASER) from their pinned
    official commits, verifying each file's SHA-256. Needs internet access; files already present
    with the right checksum are kept."""
    from engine.data.download import download as fetch
    from engine.data.loaders import resolve_data_dir

    root = resolve_data_dir(str(dest) if dest else "")

    def report(rel: str, state: str) -> None:
        console.print(f"{state:>8}  {rel}", markup=False)

    fetched = fetch(root, force=force, on_file=report)
    console.print(f"{len(fetched)} file(s) downloaded into {root}", markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")

"""Small helpers shared by the CLI command modules."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from engine.store import Store

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

DEFAULT_DB = "experiments.db"


def resolve_db(value: str | None) -> Path:
    """--db, else env OPTICAL_DB, else ./experiments.db."""
    return Path(value or os.environ.get("OPTICAL_DB") or DEFAULT_DB)


def db_path(ctx: typer.Context) -> Path:
    root = ctx.find_root()
    return resolve_db((root.obj or {}).get("db"))


def open_store(ctx: typer.Context) -> Store:
    return Store(db_path(ctx))


def print_json(obj: Any) -> None:
    # Plain print, not Rich: scripts parse this, so no wrapping or markup.
    print(json.dumps(obj, indent=2, sort_keys=True, default=str))


def parse_ids(values: list[str]) -> list[int]:
    from engine.errors import ExperimentNotFound

    ids = []
    for v in values:
        try:
            ids.append(int(v))
        except ValueError:
            raise ExperimentNotFound(f"{v!r} is not an experiment id (expected an integer)") from None
    return ids

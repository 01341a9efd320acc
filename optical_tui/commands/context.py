"""What every command reads from the root `optical` options: the database, ids to act on."""

from __future__ import annotations

import typer

from engine.errors import ExperimentNotFound
from engine.store import Store, open_store, resolve_location


def db_location(ctx: typer.Context) -> str:
    """--db (before the command), else env OPTICAL_DB, else ./experiments.db."""
    root = ctx.find_root()
    return resolve_location((root.obj or {}).get("db"))


def store_for(ctx: typer.Context) -> Store:
    return open_store(db_location(ctx))


def parse_ids(values: list[str]) -> list[int]:
    ids = []
    for v in values:
        try:
            i = int(v)
        except ValueError:
            raise ExperimentNotFound(f"{v[:40]!r} is not an experiment id (expected an "
                                     "integer)") from None
        if not 0 < i < 2**63:  # ids are positive 64-bit integers; a larger one cannot exist
            raise ExperimentNotFound(f"no experiment with id {v[:40]}")
        ids.append(i)
    return ids

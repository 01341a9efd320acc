"""The options of every command that builds an experiment config (`queue add`, `run`,
`batches`): declared once, so the three say the same thing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

ConfigFileOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML file overriding the defaults (see configs/)."),
]


def set_option(example: str) -> Any:
    """`--set KEY=VALUE`; each command shows an example of its own (`train.lr=3e-5`)."""
    return typer.Option("--set", help=f"Override one key, e.g. --set {example}. Repeatable.")

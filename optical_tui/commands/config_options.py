"""The options of every command that builds an experiment config (`queue add`, `run`,
`batches`): declared once, so the three say the same thing. `optical demo` declares its
--config (another default and help) through the same `config_option`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def config_option(help: str) -> Any:
    """`--config/-c FILE`; `optical demo` has its own default file and help."""
    return typer.Option("--config", "-c", help=help)


ConfigFileOption = Annotated[
    Path | None, config_option("TOML file overriding the defaults (see configs/).")
]


def set_option(example: str) -> Any:
    """`--set KEY=VALUE`; each command shows an example of its own (`train.lr=3e-5`)."""
    return typer.Option("--set", help=f"Override one key, e.g. --set {example}. Repeatable.")

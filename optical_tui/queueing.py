"""What queueing experiments means for both front ends (CLI and dashboard).

`new_experiments` turns user input into validated `NewExperiment` specs with the same parser
and rules as `optical queue add`, so the dashboard's form can never accept what the CLI
rejects. `STATUS_STYLE` / `status_text` give each status one glyph and colour everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.text import Text

from engine.config import load_config, parse_ratio, with_run
from engine.errors import ConfigError
from engine.store import NewExperiment

STATUS_STYLE: dict[str, tuple[str, str]] = {
    "queued": ("◌", "cyan"),
    "running": ("▶", "yellow"),
    "done": ("✔", "green"),
    "failed": ("✘", "red"),
    "cancelled": ("⊘", "bright_black"),
}


def status_text(status: str) -> Text:
    glyph, colour = STATUS_STYLE.get(status, ("?", "white"))
    return Text(f"{glyph} {status}", style=colour)


def new_experiments(ratios: Sequence[str], seeds: Sequence[int] = (), config: Path | None = None,
                    overrides: Sequence[str] = (), name: str | None = None, priority: int = 0,
                    max_attempts: int = 3, code_version: str = "") -> list[NewExperiment]:
    """One spec per ratio × seed; everything is validated before anything can be written."""
    if not ratios:
        raise ConfigError("give at least one ratio, e.g. 1:1")
    normalised = [str(parse_ratio(r)) for r in ratios]
    base = load_config(config, list(overrides))
    sweep = name if name is not None else (config.stem if config else "default")
    if not sweep.strip():
        raise ConfigError("--name must not be empty")
    return [
        NewExperiment(name=sweep, ratio=r, seed=s, priority=priority,
                      config=with_run(base, r, s).to_dict(), code_version=code_version,
                      max_attempts=max_attempts)
        for r in normalised for s in (seeds or [0])
    ]

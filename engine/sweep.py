"""What queueing experiments means, for both front ends (`optical queue add` and the dashboard's
form): user input → validated `NewExperiment` specs, all checked before anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from engine.config import load_config, parse_ratio, with_run
from engine.errors import ConfigError
from engine.store import NewExperiment


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

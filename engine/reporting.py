"""Where a training run's output goes: the `Reporter` protocol that `run_training` writes to,
and `ListReporter`, which keeps everything in memory (tests, benchmarks).

The worker's reporter (engine/running/store_reporter.py) writes to the store; the foreground
`optical run` has its own (optical_tui/commands/run.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class Reporter(Protocol):
    """Where the loop's output goes."""

    def metrics(self, step: int, values: Mapping[str, float]) -> None: ...
    def event(self, kind: str, message: str) -> None: ...
    def progress(self, step: int, total: int) -> None: ...
    def should_stop(self) -> bool: ...

    def before_checkpoint(self, step: int) -> None:
        """Called right before a checkpoint is written. The store reporter flushes there, so no
        reported point can be lost behind a checkpoint; by default there is nothing to do."""


class ListReporter:
    """Keeps everything in lists (tests, `optical run`); `stop_at` requests a stop at that step."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.rows: list[tuple[int, str, float]] = []  # (step, key, value)
        self.events: list[tuple[str, str]] = []
        self.step = 0
        self.total = 0
        self.stop_at = stop_at

    def metrics(self, step: int, values: Mapping[str, float]) -> None:
        self.rows.extend((step, k, float(v)) for k, v in values.items())

    def event(self, kind: str, message: str) -> None:
        self.events.append((kind, message))

    def progress(self, step: int, total: int) -> None:
        self.step, self.total = step, total

    def should_stop(self) -> bool:
        return self.stop_at is not None and self.step >= self.stop_at

    def before_checkpoint(self, step: int) -> None:
        """Nothing to make durable: the lists are the record."""

    def series(self, key: str) -> list[tuple[int, float]]:
        return [(s, v) for s, k, v in self.rows if k == key]

    def latest(self, prefix: str = "") -> dict[str, float]:
        return {k: v for _, k, v in self.rows if k.startswith(prefix)}

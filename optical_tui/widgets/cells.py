"""Small renderables for table cells: progress bars, ETAs, durations, metric values."""

from __future__ import annotations

import math

from rich.text import Text

from engine.statuses import Status
from engine.store import Experiment
from optical_tui.status_style import BAR_COLOUR

BAR_WIDTH = 10


def progress_bar(e: Experiment, width: int = BAR_WIDTH) -> Text:
    """`███████░░░ 70%`; empty for runs that never reported a total."""
    if not e.total_steps:
        return Text("-" if e.status != Status.RUNNING else "starting", style="dim")
    filled = round(e.progress * width)
    colour = BAR_COLOUR.get(e.status, "bright_black")
    return Text.assemble(("█" * filled, colour), ("░" * (width - filled), "bright_black"),
                         f" {e.progress * 100:3.0f}%")


def duration(seconds: float) -> str:
    """Compact human duration: 45s, 12m, 3h05m, 2d04h."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s" if s < 600 else f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def eta(e: Experiment, now: float) -> str:
    """Remaining time of a running experiment from its average step rate so far."""
    if e.status == Status.DONE and e.started_at and e.finished_at:
        return f"took {duration(e.finished_at - e.started_at)}"
    # The rate of the current attempt: a requeued run's first attempt (and the time it waited in
    # the queue) says nothing about how fast it runs now.
    start = e.attempt_started_at or e.started_at
    done = e.step - (e.attempt_start_step if e.attempt_started_at else 0)
    if e.status != Status.RUNNING or not start or not e.total_steps or done <= 0:
        return "-"
    per_step = (now - start) / done
    return duration(per_step * max(0, e.total_steps - e.step))


def metric_value(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"

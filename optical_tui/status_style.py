"""One glyph and colour per experiment status, everywhere it is shown (CLI and dashboard)."""

from __future__ import annotations

from rich.text import Text

from engine.statuses import Status, WorkerState

# Keyed by str: a StrEnum member and its stored string look up the same entry.
STATUS_STYLE: dict[str, tuple[str, str]] = {
    Status.QUEUED: ("◌", "cyan"),
    Status.RUNNING: ("▶", "yellow"),
    Status.DONE: ("✔", "green"),
    Status.FAILED: ("✘", "red"),
    Status.CANCELLED: ("⊘", "bright_black"),
}
#: Progress bars: the colour of the filled part.
BAR_COLOUR: dict[str, str] = {Status.RUNNING: "yellow", Status.DONE: "green", Status.FAILED: "red"}
WORKER_STATE_STYLE: dict[WorkerState, str] = {
    WorkerState.ALIVE: "green", WorkerState.STOPPING: "yellow", WorkerState.STALE: "red",
    WorkerState.STOPPED: "bright_black", WorkerState.GONE: "bright_black",
}


def status_text(status: str) -> Text:
    glyph, colour = STATUS_STYLE.get(status, ("?", "white"))
    return Text(f"{glyph} {status}", style=colour)

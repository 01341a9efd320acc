"""The bottom bar: alive workers, their devices and what they run, and the queue length."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import Static

from engine.statuses import Status, WorkerStatus
from engine.store import Experiment, WorkerInfo
from optical_tui.console import safe

# A worker whose heartbeat is older than this is shown as lost (its runs get requeued by the
# next worker's stale-lease check).
ALIVE_S = 90.0


def worker_summary(workers: Sequence[WorkerInfo], experiments: Sequence[Experiment],
                   now: float) -> Text:
    alive = [w for w in workers if now - w.heartbeat_at <= ALIVE_S]
    lost = len(workers) - len(alive)
    queued = sum(e.status == Status.QUEUED for e in experiments)
    running = sum(e.status == Status.RUNNING for e in experiments)
    text = Text()
    text.append(f" workers {len(alive)} alive", style="bold green" if alive else "bold red")
    if lost:
        text.append(f" · {lost} silent", style="red")
    for w in alive:
        doing = f"#{w.experiment_id}" if w.experiment_id is not None else w.status
        # Worker ids and devices come from other machines' rows: shown escaped, never raw.
        text.append(safe(f"  {w.id}@{w.device} {doing}"),
                    style="dim" if w.status == WorkerStatus.IDLE else "")
    text.append(f"   │ queue {queued} · running {running} · total {len(experiments)}")
    if not alive and queued:
        text.append("   start one with: optical worker", style="yellow")
    return text


class WorkerStatusBar(Static):
    DEFAULT_CSS = """
    WorkerStatusBar { height: 1; background: $boost; }
    """

    def show(self, workers: Sequence[WorkerInfo], experiments: Sequence[Experiment],
             now: float) -> None:
        self.update(worker_summary(workers, experiments, now))

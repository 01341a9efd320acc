"""Every message the dashboard passes around: dataclasses, named in the past tense.

The poller thread posts them to the app (it never touches widgets); the app hands copies down
to the open screens. bubble=False: a copy handed down must not bubble back up to the app.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from textual.message import Message

from engine.store import Event, Experiment, MetricPoint, WorkerInfo


@dataclass
class ExperimentsChanged(Message, bubble=False):
    """Experiment rows, workers and the latest primary metric per experiment, all current."""

    experiments: tuple[Experiment, ...]
    workers: tuple[WorkerInfo, ...]
    primary: dict[int, tuple[str, float]] = field(default_factory=dict)
    #: Now by the database server's clock (leases and heartbeats are judged by it); None: SQLite.
    db_now: float | None = None

    def can_replace(self, message: Message) -> bool:
        # Each one is the whole current state, so a newer one waiting right behind an older one
        # makes the older one moot: a UI thread that fell behind skips to the latest rows. The
        # failure and sweep alerts compare the last handled state with this one, so a skipped
        # state loses no alert. (Metric and event messages are increments: never replaced.)
        return isinstance(message, ExperimentsChanged)


@dataclass
class MetricsAppended(Message, bubble=False):
    """Metric points committed since the previous poll."""

    metrics: tuple[MetricPoint, ...]


@dataclass
class EventsAppended(Message, bubble=False):
    events: tuple[Event, ...]


@dataclass
class PollFailed(Message, bubble=False):
    error: str


#: What the app forwards to every open live screen.
LIVE_MESSAGES = (ExperimentsChanged, MetricsAppended, EventsAppended)

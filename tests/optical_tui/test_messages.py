"""The dashboard's messages (optical_tui/messages.py): a UI thread that fell behind skips stale
snapshots of the experiment rows, and never drops an increment of metrics or events."""

from __future__ import annotations

from textual.app import App

from engine.metric_keys import TrainKey
from engine.store import MetricPoint
from optical_tui.messages import EventsAppended, ExperimentsChanged, MetricsAppended
from tests.dashboard_support import synchronous


class Recorder(App[None]):
    """An app that only records what it handled, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.handled: list[object] = []

    def on_experiments_changed(self, message: ExperimentsChanged) -> None:
        self.handled.append(("experiments", message.db_now))

    def on_metrics_appended(self, message: MetricsAppended) -> None:
        self.handled.append(("metrics", len(message.metrics)))

    def on_events_appended(self, message: EventsAppended) -> None:
        self.handled.append(("events", len(message.events)))


def snapshot(now: float) -> ExperimentsChanged:
    return ExperimentsChanged((), (), {}, now)


def points(n: int) -> MetricsAppended:
    return MetricsAppended(tuple(MetricPoint(step, 1, TrainKey.LOSS, step, 0.5, 0.0)
                                 for step in range(n)))


@synchronous
async def test_queued_snapshots_collapse_to_the_newest_and_increments_all_arrive() -> None:
    app = Recorder()
    async with app.run_test() as pilot:
        await pilot.pause()
        # Posted with no await in between: all wait in the queue as if the UI thread were busy.
        for message in (snapshot(1), snapshot(2), snapshot(3), points(2), points(5),
                        snapshot(4), EventsAppended(()), snapshot(5), snapshot(6)):
            app.post_message(message)
        await pilot.pause()
    assert app.handled == [("experiments", 3), ("metrics", 2), ("metrics", 5),
                           ("experiments", 4), ("events", 0), ("experiments", 6)]


def test_only_a_snapshot_replaces_a_snapshot() -> None:
    assert snapshot(2).can_replace(snapshot(1))
    assert not snapshot(2).can_replace(points(1))
    assert not points(1).can_replace(points(1))
    assert not points(1).can_replace(snapshot(1))

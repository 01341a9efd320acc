"""Background reader for the dashboard: its own store connection, messages up, widgets untouched.

`Poller.poll()` is plain code (the benchmark and tests drive it directly): it costs one cheap
`Store.change_token()` when nothing was committed since the last call, and otherwise reads the
experiment rows, the workers, and only the metric points and events that are new since the last
cursor. `poll_forever` runs it in a Textual thread worker and posts the results as messages.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from textual.message import Message

from engine.errors import OpticalError
from engine.metric_keys import PRIMARY_KEYS
from engine.store import Event, Experiment, MetricPoint, WorkerInfo, open_store, sqlite_path
from optical_tui.messages import EventsAppended, ExperimentsChanged, MetricsAppended, PollFailed


@dataclass(frozen=True)
class PollResult:
    experiments: tuple[Experiment, ...]
    workers: tuple[WorkerInfo, ...]
    primary: dict[int, tuple[str, float]]
    metrics: tuple[MetricPoint, ...]
    events: tuple[Event, ...]
    #: Now by a database server's clock, which wrote the heartbeats; None for an SQLite file
    #: (its times come from the writers' clocks, so the dashboard's own clock is the one to use).
    db_now: float | None = None


class Poller:
    """Incremental reader. Create it in the thread that uses it (one connection per thread)."""

    def __init__(self, db: str, primary_keys: Sequence[str] = PRIMARY_KEYS) -> None:
        self.store = open_store(db)
        self._server_clock = sqlite_path(db) is None
        self.primary_keys = tuple(primary_keys)
        self._token: object = None
        self._first = True
        self._metric_cursor: object = None
        self._event_cursor: object = None
        # key -> exp id -> (step, value): the latest point of each primary key, kept up to date
        # from new rows so the queue never re-aggregates the whole metrics table.
        self._latest: dict[str, dict[int, tuple[int, float]]] = {}

    def close(self) -> None:
        self.store.close()

    def poll(self) -> PollResult | None:
        """None when nothing was committed since the previous call."""
        token = self.store.change_token()
        if not self._first and token == self._token:
            return None
        # Cursors and caches change only once every read succeeded: after a failed read (a lost
        # connection) the next poll reads the same rows again instead of dropping them.
        if self._first:
            # Start the cursors at the end: history is loaded per screen, on demand.
            _, metric_cursor = self.store.metrics_since(None)
            events, event_cursor = self.store.events_since(None)
            latest = {k: self._initial_latest(k) for k in self.primary_keys}
            new_metrics: list[MetricPoint] = []
            new_events = events[-200:]
        else:
            # Cursors, not "ids after the last one": on PostgreSQL a row can commit after a
            # row with a higher id, and the cursors still return it (engine/store/postgres.py).
            new_metrics, metric_cursor = self.store.metrics_since(self._metric_cursor)
            new_events, event_cursor = self.store.events_since(self._event_cursor)
            latest = self._latest
        experiments = tuple(self.store.list_experiments())
        workers = tuple(self.store.list_workers())
        db_now = self.store.clock() if self._server_clock else None  # one query on PostgreSQL
        self._token, self._first = token, False
        self._metric_cursor, self._event_cursor, self._latest = metric_cursor, event_cursor, latest
        self._apply_latest(new_metrics)
        live = {e.id for e in experiments}
        # Removed experiments drop out of the cache.
        for per_exp in self._latest.values():
            for gone in [i for i in per_exp if i not in live]:
                del per_exp[gone]
        return PollResult(experiments, workers, self.primary(), tuple(new_metrics),
                          tuple(new_events), db_now)

    def _initial_latest(self, key: str) -> dict[int, tuple[int, float]]:
        # The one aggregate query, at start-up only. Step -1: a run's steps only grow (a resumed
        # run's repeated points are ignored by the store), so any newer row replaces the value.
        return {i: (-1, v) for i, v in self.store.latest_metric(key).items()}

    def _apply_latest(self, metrics: Sequence[MetricPoint]) -> None:
        for m in metrics:
            per_exp = self._latest.get(m.key)
            if per_exp is None:
                continue
            old = per_exp.get(m.experiment_id)
            if old is None or m.step >= old[0]:
                per_exp[m.experiment_id] = (m.step, m.value)

    def primary(self) -> dict[int, tuple[str, float]]:
        """Per experiment, the first primary key it has and that key's latest value."""
        out: dict[int, tuple[str, float]] = {}
        for key in reversed(self.primary_keys):
            for exp_id, (_step, value) in self._latest[key].items():
                out[exp_id] = (key, value)
        return out


def poll_forever(post: Callable[[Message], object], db: str, interval: float,
                 stop: threading.Event, wake: threading.Event) -> None:
    """Thread body: poll, post what changed, sleep until the interval passes or `wake` is set."""
    try:
        poller = Poller(db)
    except OpticalError as exc:
        post(PollFailed(str(exc)))
        return
    try:
        while not stop.is_set():
            try:
                result = poller.poll()
            except OpticalError as exc:
                post(PollFailed(str(exc)))
                result = None
            if result is not None:
                post(ExperimentsChanged(result.experiments, result.workers, result.primary,
                                        result.db_now))
                if result.metrics:
                    post(MetricsAppended(result.metrics))
                if result.events:
                    post(EventsAppended(result.events))
            wake.wait(interval)
            wake.clear()
    finally:
        poller.close()

"""The store's contract: what every backend (SQLite, PostgreSQL) does, in words, without SQL.

Rules every backend keeps:
- State changes are compare-and-set inside one transaction: two workers never claim one row, and
  terminal states (done, failed, cancelled) are final.
- Every write a run makes is fenced on its `RunLease` (experiment id + worker id + attempt): a
  write whose lease no longer matches the row raises `LeaseLost` and changes nothing.
- Ids (experiments, metric points, events) are never reused, even after a delete: run folders
  are keyed by experiment id, and the dashboard reads metric points after a cursor.
- Database errors (locked past the timeout, disk full, I/O error, read-only file, lost
  connection) surface as `StoreError` with a message a user can act on, never as a driver error.
- Callers get frozen dataclasses (engine.store.records); no cursor or row escapes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Self

from engine.statuses import Status, WorkerStatus
from engine.store.records import (
    Event,
    Experiment,
    MetricPoint,
    NewExperiment,
    RunLease,
    StudyExport,
    WorkerInfo,
)

#: A metric row to write: (key, step, value, unix time).
PointRow = tuple[str, int, float, float]


class Store(ABC):
    """One connection to an experiments database. Not shared across threads: open one each."""

    #: What to show the user for this database (a path, or a URL without its password).
    location: str
    #: Now, by the database's clock: what heartbeat and lease times are compared with (SQLite:
    #: the injected clock, this box's by default; PostgreSQL: the server's, one query).
    clock: Callable[[], float]

    # ----------------------------------------------------------------- lifecycle and info

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abstractmethod
    def schema_version(self) -> int: ...

    @abstractmethod
    def change_token(self) -> object:
        """Cheap: equal to the previous call's value when nothing was committed meanwhile
        (a dashboard polls this and does nothing else while the database is quiet)."""

    @abstractmethod
    def check(self) -> dict[str, Any]:
        """Integrity, schema version and row counts (`optical db check`)."""

    # ----------------------------------------------------------------- experiments

    @abstractmethod
    def add_experiments(self, specs: Iterable[NewExperiment]) -> list[Experiment]:
        """Insert all or nothing."""

    @abstractmethod
    def get(self, exp_id: int) -> Experiment:
        """Raises ExperimentNotFound."""

    @abstractmethod
    def list_experiments(self, status: Status | Sequence[Status] | None = None,
                         ids: Sequence[int] | None = None,
                         name: str | None = None) -> list[Experiment]: ...

    @abstractmethod
    def claim_next(self, worker_id: str, device: str = "",
                   skip: Collection[int] = ()) -> Experiment | None:
        """Atomically take the highest-priority queued experiment (other than those in `skip`);
        its `.lease` fences the run."""

    @abstractmethod
    def flush(self, lease: RunLease, metrics: Sequence[PointRow] = (), step: int | None = None,
              total: int | None = None) -> bool:
        """Metric points + heartbeat + progress in one transaction; returns the cancel flag.
        A point already stored for (experiment, key, step) is kept and the new one ignored."""

    @abstractmethod
    def set_provenance(self, lease: RunLease, provenance: dict[str, Any]) -> None: ...

    @abstractmethod
    def log_run_event(self, lease: RunLease, kind: str, message: str) -> None:
        """An event written by a run: fenced like every other write of the run."""

    @abstractmethod
    def finish(self, lease: RunLease, status: Status, error: str | None = None) -> None: ...

    @abstractmethod
    def release(self, lease: RunLease, reason: str = "released", *,
                count_attempt: bool = False) -> None:
        """Hand a running experiment back to the queue; it resumes from its checkpoint later.
        A drain (SIGTERM, `worker stop`) does not count the attempt; a crash does
        (`count_attempt`), and a run out of attempts is failed instead."""

    @abstractmethod
    def heartbeat_ages(self) -> dict[int, float]:
        """Seconds since each running experiment's last heartbeat, by the database's clock."""

    @abstractmethod
    def requeue_stale(self, lease_s: float) -> list[int]:
        """Runs whose heartbeat is older than the lease are lost: requeue them (or fail them once
        their attempts are used up). Returns the ids touched."""

    @abstractmethod
    def request_cancel(self, ids: Sequence[int]) -> list[Experiment]:
        """Queued → cancelled now; running → flagged, the run stops within seconds."""

    @abstractmethod
    def retry(self, ids: Sequence[int]) -> list[Experiment]:
        """Queue a fresh copy of failed/cancelled runs (terminal states are final)."""

    @abstractmethod
    def clone(self, ids: Sequence[int]) -> list[Experiment]: ...

    @abstractmethod
    def retag(self, ids: Sequence[int], add: Sequence[str] = (),
              remove: Sequence[str] = ()) -> list[Experiment]:
        """Add and remove tags (checked by engine/tags.py) on experiments in any status, all or
        nothing; each change is logged as an event."""

    @abstractmethod
    def annotate(self, exp_id: int, note: str) -> Experiment:
        """Replace an experiment's note ("" clears it); logged as an event."""

    @abstractmethod
    def remove(self, ids: Sequence[int]) -> int:
        """Delete experiments with their metrics and events (running ones must be cancelled
        first)."""

    # ----------------------------------------------------------------- metrics and events

    @abstractmethod
    def metrics(self, exp_id: int | None = None, prefix: str | None = None,
                keys: Sequence[str] | None = None) -> list[MetricPoint]:
        """Stored points, oldest first."""

    @abstractmethod
    def metrics_since(self, cursor: object | None) -> tuple[list[MetricPoint], object]:
        """Points committed since `cursor` (None: start at the end, return no points) and the new
        cursor. Never skips a point, whatever order concurrent writers commit in."""

    @abstractmethod
    def latest_metric(self, key: str) -> dict[int, float]:
        """Value of `key` at its highest step, per experiment."""

    @abstractmethod
    def log_event(self, exp_id: int | None, kind: str, message: str) -> None:
        """An event written by a user or a worker (not fenced; runs use `log_run_event`)."""

    @abstractmethod
    def events(self, exp_id: int | None = None, after_id: int = 0) -> list[Event]: ...

    @abstractmethod
    def events_since(self, cursor: object | None) -> tuple[list[Event], object]:
        """Events committed since `cursor` and the new cursor; None: every event so far (unlike
        `metrics_since`, events are few, and a reader shows the recent ones at once). Never skips
        an event, whatever order concurrent writers commit in (`after_id` can, on PostgreSQL)."""

    # ----------------------------------------------------------------- copying a study

    @abstractmethod
    def export_study(self) -> AbstractContextManager[StudyExport]:
        """Every experiment, metric point and event, read in one snapshot (held until exit)."""

    @abstractmethod
    def import_study(self, study: StudyExport) -> dict[str, int]:
        """Write an exported study into this store, keeping every id, all or nothing; refuses a
        store that holds (or ever held) experiments, metrics or events. Later ids continue after
        `study.last_ids`. Returns the counts written."""

    # ----------------------------------------------------------------- workers

    @abstractmethod
    def register_worker(self, worker_id: str, host: str, pid: int, device: str,
                        log_path: str = "") -> None: ...

    @abstractmethod
    def worker_heartbeat(self, worker_id: str, experiment_id: int | None,
                         status: WorkerStatus) -> bool:
        """Returns the worker's stop flag."""

    @abstractmethod
    def request_worker_stop(self, worker_id: str | None = None, host: str | None = None) -> int:
        """Flag one worker, every worker of a host, or all; returns how many were flagged."""

    @abstractmethod
    def unregister_worker(self, worker_id: str) -> None: ...

    @abstractmethod
    def reap_workers(self, silent_s: float) -> list[str]:
        """Mark workers silent for longer than `silent_s` gone: their rows stay (history, `worker
        status --all`) but leave the live list; a late heartbeat revives one. Returns their ids."""

    @abstractmethod
    def list_workers(self, include_stopped: bool = False) -> list[WorkerInfo]:
        """Live workers, oldest first; `include_stopped` adds the stopped and gone ones."""


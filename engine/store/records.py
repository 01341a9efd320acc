"""What the store hands out and takes in: frozen dataclasses, the same for every backend."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from engine.statuses import Status, WorkerStatus


@dataclass(frozen=True)
class NewExperiment:
    name: str
    ratio: str
    seed: int
    config: dict[str, Any]
    priority: int = 0
    code_version: str = ""
    max_attempts: int = 3
    retry_of: int | None = None
    # Sweep factors beyond ratio and seed, e.g. {"ot.weight": 1.0}: what makes this run's cell.
    factors: dict[str, Any] = field(default_factory=dict)
    # Labels the user gives (`queue add --tag`, `optical tag`): sorted, checked by engine/tags.py.
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Experiment:
    id: int
    name: str
    ratio: str
    seed: int
    priority: int
    status: Status
    config: dict[str, Any]
    code_version: str
    attempts: int
    max_attempts: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    heartbeat_at: float | None
    worker_id: str | None
    cancel_requested: bool
    error: str | None
    step: int
    total_steps: int
    device: str | None
    provenance: dict[str, Any] = field(default_factory=dict)
    retry_of: int | None = None
    factors: dict[str, Any] = field(default_factory=dict)
    # When the current attempt started and at which step (the ETA's rate); started_at is the
    # first attempt's start.
    attempt_started_at: float | None = None
    attempt_start_step: int = 0
    # The user's labels and free-text note (`optical tag`, `optical note`); never read by a run.
    tags: tuple[str, ...] = ()
    note: str = ""

    @property
    def progress(self) -> float:
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0

    @property
    def lease(self) -> RunLease | None:
        """The fencing token of the current attempt, while the run is held by a worker."""
        if self.status != Status.RUNNING or self.worker_id is None:
            return None
        return RunLease(self.id, self.worker_id, self.attempts)


@dataclass(frozen=True)
class RunLease:
    """Who may write for a running experiment: every write of a run is fenced on all three.

    A worker id alone is not enough (containers and Slurm reuse pids and host names): a paused
    process whose run was reclaimed by a worker with the same id still holds an older attempt
    number, so its writes match no row."""

    experiment_id: int
    worker_id: str
    attempt: int


@dataclass(frozen=True)
class MetricPoint:
    rowid: int
    experiment_id: int
    key: str
    step: int
    value: float
    time: float


@dataclass(frozen=True)
class Event:
    id: int
    experiment_id: int | None
    time: float
    kind: str
    message: str


@dataclass(frozen=True)
class StudyExport:
    """A whole study as `optical db copy` moves it, read in one snapshot of the source.

    `metrics` is streamed in id order while the snapshot is open (a study can hold millions of
    points); `last_ids` is the highest id each table ever handed out (experiments, metrics,
    events), which can be above the highest id still present after deletes: the destination
    continues after it, so ids are never reused."""

    experiments: list[Experiment]
    events: list[Event]
    metrics: Iterable[MetricPoint]
    metric_count: int
    last_ids: dict[str, int]


@dataclass(frozen=True)
class WorkerInfo:
    id: str
    host: str
    pid: int
    device: str
    started_at: float
    heartbeat_at: float
    experiment_id: int | None
    status: WorkerStatus
    stop_requested: bool
    log_path: str

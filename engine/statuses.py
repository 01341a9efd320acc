"""Where things stand: the one owner of every status word (Optuna's `TrialState` pattern).

The database keeps the plain strings (`StrEnum` members are `str`, so they bind and compare as
such); everything else names them through these enums, so a typo is an AttributeError, not a
row stuck in a state nobody reads.

    queued ──claim──▶ running ──▶ done | failed | cancelled      (terminal states are final)
       ▲                 │
       └──requeue/release┘   (a lost or drained run goes back and resumes from its checkpoint)
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """An experiment's state."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL: frozenset[Status] = frozenset({Status.DONE, Status.FAILED, Status.CANCELLED})
#: States a run can still leave on its own (a demo or a batch job waits for them).
ACTIVE: tuple[Status, ...] = (Status.QUEUED, Status.RUNNING)
#: Only these can be retried (a retry queues a fresh copy; the original stays as it is).
RETRYABLE: tuple[Status, ...] = (Status.FAILED, Status.CANCELLED)


class WorkerStatus(StrEnum):
    """What a worker last said of itself (stored in its row)."""

    IDLE = "idle"
    RUNNING = "running"
    STOPPED = "stopped"
    GONE = "gone"  # silent for several leases: marked by the reaper, kept for its history


class WorkerState(StrEnum):
    """What `optical worker status` concludes from a worker's row and heartbeat age."""

    ALIVE = "alive"
    STOPPING = "stopping"  # stop requested, still finishing its current step
    STALE = "stale"  # no heartbeat within the lease, or its process is gone
    STOPPED = "stopped"
    GONE = "gone"  # silent for several leases: out of the live view (`--all` shows it)


class RunOutcome(StrEnum):
    """How one call of the training loop ended."""

    DONE = "done"  # trained and evaluated: the run is finished
    STOPPED = "stopped"  # checkpointed on request (drain, cancel, Ctrl-C): resumes from there


class EventKind(StrEnum):
    """Kinds of event-log lines (the dashboard's events tab, `optical queue show`)."""

    QUEUED = "queued"
    CLAIMED = "claimed"
    REQUEUED = "requeued"
    CANCEL_REQUESTED = "cancel_requested"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TRACEBACK = "traceback"
    WORKER = "worker"
    INFO = "info"
    WARNING = "warning"
    EVAL = "eval"
    CHECKPOINT = "checkpoint"

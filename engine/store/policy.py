"""What the store decides, the same in every backend, as pure functions: no SQL, no connection.

A backend reads the rows, asks this module what follows, and writes the answer in its own SQL
dialect. A rule ("give lost runs one more try") or a message's wording is changed here once and
tested without a database (tests/engine/store/test_policy.py).

A `Transition` names the columns one experiment's row takes, with `NOW` standing for the
database's clock (SQLite: the store's clock; PostgreSQL: the server's), and the event that says
so in the log.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.errors import ExperimentNotFound, InvalidTransition, LeaseLost, StoreError
from engine.statuses import RETRYABLE, TERMINAL, EventKind, Status
from engine.store.records import NewExperiment, RunLease
from engine.tags import change_text


class _Now:
    """The marker for "the database's now" in a Transition's changes."""

    def __repr__(self) -> str:
        return "NOW"


NOW = _Now()


@dataclass(frozen=True)
class Transition:
    """One experiment's move: the columns its row takes, and the event that says so."""

    changes: Mapping[str, Any]
    event: EventKind
    message: str

    @property
    def status(self) -> Status | None:
        """The status the row ends in, or None where it keeps its status."""
        value = self.changes.get("status")
        return None if value is None else Status(value)


def _ended(status: Status, **extra: Any) -> dict[str, Any]:
    """The columns of a run that ends now and leaves its worker."""
    return {"status": status.value, "finished_at": NOW, **extra, "worker_id": None}


# --------------------------------------------------------------------------- a user's commands

# `rows` maps id -> a row with a "status" column.
def check_cancellable(rows: Mapping[int, Any]) -> None:
    final = [i for i, r in rows.items() if r["status"] in TERMINAL]
    if final:
        raise InvalidTransition(f"experiment {final[0]} is already {rows[final[0]]['status']}; "
                                "nothing to cancel")


def check_retryable(rows: Mapping[int, Any]) -> None:
    bad = [i for i, r in rows.items() if r["status"] not in RETRYABLE]
    if bad:
        raise InvalidTransition(f"experiment {bad[0]} is {rows[bad[0]]['status']}; "
                                "only failed or cancelled runs can be retried")


def already_retried(exp_id: int, copy_id: int) -> InvalidTransition:
    return InvalidTransition(f"experiment {exp_id} was already retried as #{copy_id}; "
                             f"retry #{copy_id} instead (or clone #{exp_id})")


def check_removable(rows: Mapping[int, Any]) -> None:
    running = [i for i, r in rows.items() if r["status"] == Status.RUNNING]
    if running:
        raise InvalidTransition(f"experiment {running[0]} is running; cancel it first")


def cancel(status: str) -> Transition:
    """A queued run is cancelled at once; a running one is flagged and stops within seconds."""
    if status == Status.QUEUED:
        return Transition({"status": Status.CANCELLED.value, "finished_at": NOW},
                          EventKind.CANCELLED, "cancelled while queued")
    return Transition({"cancel_requested": True}, EventKind.CANCEL_REQUESTED, "cancel requested")


def queued_message(spec: NewExperiment) -> str:
    return f"queued {spec.name!r} ratio {spec.ratio} seed {spec.seed}"


def copy_message(source_id: int, retry: bool) -> str:
    """The event of a retry's or a clone's fresh copy."""
    return f"{'retry' if retry else 'clone'} of #{source_id}"


def tags_message(before: tuple[str, ...], after: tuple[str, ...]) -> str:
    return "tags " + change_text([t for t in after if t not in before],
                                 [t for t in before if t not in after])


def note_message(note: str) -> str:
    return f"note: {note}" if note else "note cleared"


def not_found(exp_id: int) -> ExperimentNotFound:
    return ExperimentNotFound(f"no experiment with id {exp_id}")


# --------------------------------------------------------------------------- a run's life

def claimed_message(worker_id: str, device: str) -> str:
    return f"claimed by {worker_id} on {device or '?'}"


def lease_lost(lease: RunLease) -> LeaseLost:
    return LeaseLost(f"experiment {lease.experiment_id} is no longer held by worker "
                     f"{lease.worker_id} (attempt {lease.attempt})")


def finish(status: Status, error: str | None) -> Transition:
    """A run that ends by itself: the event says the error's last line, or the status."""
    if status not in TERMINAL:
        raise InvalidTransition(f"finish: {status!r} is not a terminal status")
    status = Status(status)
    message = error.strip().splitlines()[-1] if error and error.strip() else status.value
    changes = {"status": status.value, "finished_at": NOW, "heartbeat_at": NOW, "error": error}
    return Transition(changes, EventKind(status.value), message)


def release(reason: str, attempts: int, max_attempts: int, count_attempt: bool) -> Transition:
    """Where a released run goes, and the event that says so. `reason` says what happened, not
    what follows. A drain hands its attempt back: requeued. A crash spends its attempt: requeued
    while attempts are left, else failed (and then the message must not promise a requeue)."""
    if count_attempt and attempts >= max_attempts:
        msg = f"{reason}; not requeued: no attempts left ({attempts}/{max_attempts} used)"
        return Transition(_ended(Status.FAILED, error=msg), EventKind.FAILED, msg)
    if not count_attempt:
        # A drain hands the attempt back; a crash keeps it counted.
        return Transition({"status": Status.QUEUED.value, "worker_id": None,
                           "attempts": max(attempts - 1, 0)}, EventKind.REQUEUED, reason)
    msg = (f"{reason}; requeued to resume from its last checkpoint "
           f"({attempts}/{max_attempts} attempts used)")
    return Transition({"status": Status.QUEUED.value, "worker_id": None, "attempts": attempts},
                      EventKind.REQUEUED, msg)


def lost_run(worker_id: str, attempts: int, max_attempts: int, cancel_requested: bool,
             silent: float) -> Transition:
    """A running experiment whose heartbeat is older than the lease: `silent` is that
    heartbeat's age in seconds."""
    if cancel_requested:
        # The user asked to stop it; a lost worker does not change that.
        msg = f"cancelled: its worker {worker_id} was lost before the cancel took effect"
        return Transition(_ended(Status.CANCELLED), EventKind.CANCELLED, msg)
    if attempts >= max_attempts:
        msg = f"lost: no heartbeat for {silent:.0f}s after {attempts} attempt(s)"
        return Transition(_ended(Status.FAILED, error=msg), EventKind.FAILED, msg)
    msg = f"lost worker {worker_id} (no heartbeat for {silent:.0f}s); requeued"
    return Transition({"status": Status.QUEUED.value, "worker_id": None}, EventKind.REQUEUED, msg)


# --------------------------------------------------------------------------- workers and schema

def worker_started_message(worker_id: str, host: str, device: str) -> str:
    return f"worker {worker_id} started on {host} ({device})"


def worker_stopped_message(worker_id: str) -> str:
    return f"worker {worker_id} stopped"


def worker_gone_message(worker_id: str, silent_s: float) -> str:
    return f"worker {worker_id} gone: no heartbeat for {silent_s:.0f}s"


def refuse_newer_schema(location: str, version: int, supported: int) -> None:
    """A database written by a newer optical-tui is left alone."""
    if version > supported:
        raise StoreError(f"{location}: schema version {version} is newer than this optical-tui "
                         f"understands ({supported}); upgrade optical-tui")

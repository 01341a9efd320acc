"""The contract's commands that both backends carry out alike, written once over a few
statements each backend spells in its own SQL (`_tx`, `_require`, `_update`, `_event`, ...).

The decisions come from engine/store/policy.py; a backend adds only the SQL, and keeps its own
version of a command where its dialect does it better (PostgreSQL's one-statement claim and
flush, for instance).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar

from engine.statuses import EventKind, Status, WorkerStatus
from engine.store import policy
from engine.store.base import Store
from engine.store.records import Event, Experiment, NewExperiment, RunLease, WorkerInfo
from engine.store.rows import (
    Row,
    copied_values,
    event_from_row,
    experiment_from_row,
    new_experiment_values,
    tags_of,
    tags_text,
    worker_from_row,
)
from engine.tags import changed

#: What a backend's statements run on: an sqlite3 connection, a psycopg cursor.
C = TypeVar("C")


class SqlStore(Store, Generic[C]):
    """A store whose user commands, releases and lost-run sweep follow engine/store/policy.py."""

    #: The driver's parameter placeholder.
    MARK: str
    #: How a list binds: one placeholder per item (`IN (?, ?)`) or one array (`= ANY(%s)`).
    SPREAD_LISTS: bool
    #: The boolean true as the dialect writes it.
    TRUE: str

    # ----------------------------------------------------------------- the backend's statements

    @abstractmethod
    def _tx(self) -> AbstractContextManager[C]:
        """A write transaction: committed on success, rolled back on any exception."""

    @abstractmethod
    def _rows(self, query: str, params: Sequence[Any] = ()) -> list[Any]:
        """The rows of one read."""

    @abstractmethod
    def _execute(self, c: C, query: str, params: Sequence[Any]) -> int:
        """Run one statement in a transaction; returns the rows it touched."""

    @abstractmethod
    def _require(self, c: C, ids: Sequence[int]) -> Mapping[int, Row]:
        """The rows of `ids`, held for the transaction, in the order asked; ExperimentNotFound
        for a missing one."""

    @abstractmethod
    def _update(self, c: C, exp_id: int, changes: Mapping[str, Any]) -> None:
        """Set columns of one experiment (policy.NOW: the database's clock)."""

    @abstractmethod
    def _insert(self, c: C, values: Mapping[str, Any]) -> Experiment:
        """A new experiment row with a never-used id; returns it as stored."""

    @abstractmethod
    def _event(self, c: C, exp_id: int | None, kind: str, message: str) -> None: ...

    @abstractmethod
    def _retried_as(self, c: C, exp_id: int) -> int | None:
        """The id of an earlier retry of `exp_id`, if any."""

    @abstractmethod
    def _hold(self, c: C, lease: RunLease) -> Row:
        """The row a lease holds, locked (attempts, max_attempts at least); LeaseLost if none."""

    @abstractmethod
    def _stale(self, c: C, lease_s: float) -> Sequence[Row]:
        """Running rows silent for longer than the lease, locked, with their heartbeat's age as
        `silent` (id, worker_id, attempts, max_attempts, cancel_requested at least)."""

    @abstractmethod
    def _delete(self, c: C, ids: Sequence[int]) -> None:
        """Delete experiments with their metrics and events."""

    def _apply(self, c: C, exp_id: int, t: policy.Transition) -> None:
        self._update(c, exp_id, t.changes)
        self._event(c, exp_id, t.event, t.message)

    def _where(self) -> Where:
        return Where(self.MARK, self.SPREAD_LISTS)

    # ----------------------------------------------------------------- experiments

    def get(self, exp_id: int) -> Experiment:
        rows = self._rows(f"SELECT * FROM experiments WHERE id = {self.MARK}", (exp_id,))
        if not rows:
            raise policy.not_found(exp_id)
        return experiment_from_row(rows[0])

    def list_experiments(self, status: Status | Sequence[Status] | None = None,
                         ids: Sequence[int] | None = None,
                         name: str | None = None) -> list[Experiment]:
        where = self._where()
        if status is not None:
            where.among("status", statuses(status))
        if ids is not None:
            where.among("id", ids)
        if name is not None:
            where.add(f"name = {self.MARK}", name)
        return [experiment_from_row(r) for r in self._rows(
            f"SELECT * FROM experiments{where.sql()} ORDER BY id", where.params)]

    def add_experiments(self, specs: Iterable[NewExperiment]) -> list[Experiment]:
        out = []
        with self._tx() as c:
            for s in specs:
                # Ids are never reused, even after `rm`.
                e = self._insert(c, new_experiment_values(s))
                self._event(c, e.id, EventKind.QUEUED, policy.queued_message(s))
                out.append(e)
        return out

    def release(self, lease: RunLease, reason: str = "released", *,
                count_attempt: bool = False) -> None:
        with self._tx() as c:
            row = self._hold(c, lease)
            self._apply(c, lease.experiment_id, policy.release(
                reason, row["attempts"], row["max_attempts"], count_attempt))

    def requeue_stale(self, lease_s: float) -> list[int]:
        with self._tx() as c:
            rows = self._stale(c, lease_s)
            for r in rows:
                self._apply(c, r["id"], policy.lost_run(
                    r["worker_id"], r["attempts"], r["max_attempts"], bool(r["cancel_requested"]),
                    r["silent"]))
        return [r["id"] for r in rows]

    def request_cancel(self, ids: Sequence[int]) -> list[Experiment]:
        with self._tx() as c:
            rows = self._require(c, ids)
            policy.check_cancellable(rows)
            for i, r in rows.items():
                self._apply(c, i, policy.cancel(r["status"]))
        return self.list_experiments(ids=list(ids))

    def retry(self, ids: Sequence[int]) -> list[Experiment]:
        with self._tx() as c:
            rows = self._require(c, ids)
            policy.check_retryable(rows)
            for i in rows:
                again = self._retried_as(c, i)
                if again is not None:
                    raise policy.already_retried(i, again)
            return self._copy(c, rows, retry=True)

    def clone(self, ids: Sequence[int]) -> list[Experiment]:
        with self._tx() as c:
            return self._copy(c, self._require(c, ids), retry=False)

    def _copy(self, c: C, rows: Mapping[int, Row], retry: bool) -> list[Experiment]:
        # Inside the caller's transaction, so a check and the copy it allows are one step.
        out = []
        for i, r in rows.items():
            e = self._insert(c, copied_values(r, i if retry else None))
            self._event(c, e.id, EventKind.QUEUED, policy.copy_message(i, retry))
            out.append(e)
        return out

    def retag(self, ids: Sequence[int], add: Sequence[str] = (),
              remove: Sequence[str] = ()) -> list[Experiment]:
        with self._tx() as c:
            # _require holds the rows: two taggers never lose each other's update.
            for i, r in self._require(c, ids).items():
                before = tags_of(r["tags"])
                after = changed(before, add, remove)
                if after != before:
                    self._update(c, i, {"tags": tags_text(after)})
                    self._event(c, i, EventKind.INFO, policy.tags_message(before, after))
        return self.list_experiments(ids=list(ids))

    def annotate(self, exp_id: int, note: str) -> Experiment:
        with self._tx() as c:
            self._require(c, [exp_id])
            self._update(c, exp_id, {"note": note})
            self._event(c, exp_id, EventKind.INFO, policy.note_message(note))
        return self.get(exp_id)

    def remove(self, ids: Sequence[int]) -> int:
        with self._tx() as c:
            policy.check_removable(self._require(c, ids))
            self._delete(c, ids)
        return len(ids)


    # ----------------------------------------------------------------- events and workers

    def events(self, exp_id: int | None = None, after_id: int = 0) -> list[Event]:
        where = self._where()
        if exp_id is not None:
            where.add(f"experiment_id = {self.MARK}", exp_id)
        where.add(f"id > {self.MARK}", after_id)
        return [event_from_row(r) for r in self._rows(
            f"SELECT * FROM events{where.sql()} ORDER BY id", where.params)]

    def request_worker_stop(self, worker_id: str | None = None, host: str | None = None) -> int:
        where = self._where()
        where.add(f"status != {self.MARK}", WorkerStatus.STOPPED.value)
        if worker_id is not None:
            where.add(f"id = {self.MARK}", worker_id)
        if host is not None:
            where.add(f"host = {self.MARK}", host)
        with self._tx() as c:
            return self._execute(c, f"UPDATE workers SET stop_requested = {self.TRUE}"
                                    f"{where.sql()}", where.params)

    def list_workers(self, include_stopped: bool = False) -> list[WorkerInfo]:
        where = self._where()
        if not include_stopped:
            where.add(f"status NOT IN ({self.MARK}, {self.MARK})", WorkerStatus.STOPPED.value,
                      WorkerStatus.GONE.value)
        return [worker_from_row(r) for r in self._rows(
            f"SELECT * FROM workers{where.sql()} ORDER BY started_at", where.params)]


class Where:
    """Conditions joined by AND, with their parameters, in one driver's placeholder style."""

    def __init__(self, mark: str, spread_lists: bool) -> None:
        self.mark = mark
        self.spread_lists = spread_lists
        self.terms: list[str] = []
        self.params: list[Any] = []

    def add(self, term: str, *params: Any) -> None:
        self.terms.append(term)
        self.params += params

    def among(self, column: str, values: Iterable[Any]) -> None:
        """`column` is one of `values` (our own column names, never user input)."""
        values = list(values)
        if self.spread_lists:
            self.add(f"{column} IN ({','.join([self.mark] * len(values))})", *values)
        else:
            self.add(f"{column} = ANY({self.mark})", values)

    def sql(self) -> str:
        return " WHERE " + " AND ".join(self.terms) if self.terms else ""


def statuses(status: Status | Sequence[Status]) -> list[str]:
    """A `status=` filter's values: one status or several."""
    chosen = [Status(status)] if isinstance(status, str) else [Status(s) for s in status]
    return [s.value for s in chosen]

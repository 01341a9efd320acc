"""Rows and records: how a row of either backend becomes a record (engine/store/records.py), and
how a record or a spec becomes a row. The column lists are the same for both backends, so a row
read from one store is written unchanged into the other (`optical db copy`)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any, Protocol, TypeVar

from engine.statuses import Status, WorkerStatus
from engine.store.policy import NOW
from engine.store.records import Event, Experiment, MetricPoint, NewExperiment, WorkerInfo

#: Every column of an experiment row, in the order `experiment_values` returns them.
EXPERIMENT_COLUMNS = (
    "id", "name", "ratio", "seed", "priority", "status", "config", "code_version", "attempts",
    "max_attempts", "created_at", "started_at", "finished_at", "heartbeat_at", "worker_id",
    "cancel_requested", "error", "step", "total_steps", "device", "provenance", "retry_of",
    "factors", "attempt_started_at", "attempt_start_step", "tags", "note",
)
EVENT_COLUMNS = ("id", "experiment_id", "time", "kind", "message")
#: The metric id column is `rowid` in SQLite and `id` in PostgreSQL; the rest are shared.
METRIC_VALUE_COLUMNS = ("experiment_id", "key", "step", "value", "time")

T = TypeVar("T")

#: Tables whose ids are handed out once and never again (StudyExport.last_ids).
ID_TABLES = ("experiments", "metrics", "events")


def experiment_values(e: Experiment) -> tuple[Any, ...]:
    """An experiment as a row of EXPERIMENT_COLUMNS (JSON columns as sorted-key text)."""
    return (e.id, e.name, e.ratio, e.seed, e.priority, e.status.value, json_text(e.config),
            e.code_version, e.attempts, e.max_attempts, e.created_at, e.started_at, e.finished_at,
            e.heartbeat_at, e.worker_id, e.cancel_requested, e.error, e.step, e.total_steps,
            e.device, json_text(e.provenance), e.retry_of, json_text(e.factors),
            e.attempt_started_at, e.attempt_start_step, tags_text(e.tags), e.note)


def json_text(value: dict[str, Any]) -> str:
    """A JSON column (config, provenance, factors): sorted keys, so equal values read equal."""
    return json.dumps(value, sort_keys=True)


def tags_text(tags: Iterable[str]) -> str:
    """The tags column: a sorted JSON list (readable, and the same text in both backends)."""
    return json.dumps(sorted(tags))


def tags_of(text: str | None) -> tuple[str, ...]:
    return tuple(json.loads(text or "[]"))


def event_values(ev: Event) -> tuple[Any, ...]:
    return (ev.id, ev.experiment_id, ev.time, ev.kind, ev.message)


def metric_values(m: MetricPoint) -> tuple[Any, ...]:
    """A point as (id, *METRIC_VALUE_COLUMNS)."""
    return (m.rowid, m.experiment_id, m.key, m.step, m.value, m.time)


def refuse_non_empty(location: str, rows: dict[str, int], last_ids: dict[str, int]) -> str | None:
    """Why a store cannot receive a copied study, or None: the copied ids would collide with rows
    it holds, or with ids it handed out before (a run folder or a reader's cursor may use them)."""
    if any(rows.values()):
        return (f"{location} is not empty ({rows['experiments']} experiments, "
                f"{rows['metrics']} metric points, {rows['events']} events): "
                "copy into a new, empty database")
    if any(last_ids.values()):
        return (f"{location} held data before (ids up to {max(last_ids.values())} were handed "
                "out): copy into a new, empty database")
    return None


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of up to `size` items (itertools.batched needs Python 3.12)."""
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


class Row(Protocol):
    """A row as either driver hands it out (sqlite3.Row, psycopg's dict row): read by name."""

    def __getitem__(self, key: str, /) -> Any: ...


def experiment_from_row(d: Row) -> Experiment:
    return Experiment(
        id=d["id"], name=d["name"], ratio=d["ratio"], seed=d["seed"], priority=d["priority"],
        status=Status(d["status"]), config=json.loads(d["config"]),
        code_version=d["code_version"] or "", attempts=d["attempts"],
        max_attempts=d["max_attempts"], created_at=d["created_at"], started_at=d["started_at"],
        finished_at=d["finished_at"], heartbeat_at=d["heartbeat_at"], worker_id=d["worker_id"],
        cancel_requested=bool(d["cancel_requested"]), error=d["error"], step=d["step"] or 0,
        total_steps=d["total_steps"] or 0, device=d["device"],
        provenance=json.loads(d["provenance"] or "{}"), retry_of=d["retry_of"],
        factors=json.loads(d["factors"] or "{}"), attempt_started_at=d["attempt_started_at"],
        attempt_start_step=d["attempt_start_step"] or 0, tags=tags_of(d["tags"]),
        note=d["note"] or "",
    )


def point_from_row(d: Row) -> MetricPoint:
    """A metric row read as (id, *METRIC_VALUE_COLUMNS)."""
    return MetricPoint(d["id"], d["experiment_id"], d["key"], d["step"], d["value"], d["time"])


def event_from_row(d: Row) -> Event:
    return Event(d["id"], d["experiment_id"], d["time"], d["kind"], d["message"])


def worker_from_row(r: Row) -> WorkerInfo:
    return WorkerInfo(r["id"], r["host"], r["pid"], r["device"], r["started_at"],
                      r["heartbeat_at"], r["experiment_id"], WorkerStatus(r["status"]),
                      bool(r["stop_requested"]), r["log_path"] or "")


def new_experiment_values(s: NewExperiment) -> dict[str, Any]:
    """The columns of a freshly queued experiment (NOW: the database's clock)."""
    return {"name": s.name, "ratio": s.ratio, "seed": s.seed, "priority": s.priority,
            "status": Status.QUEUED.value, "config": json_text(s.config),
            "code_version": s.code_version, "max_attempts": s.max_attempts, "created_at": NOW,
            "retry_of": s.retry_of, "factors": json_text(s.factors), "tags": tags_text(s.tags)}


def copied_values(r: Row, retry_of: int | None) -> dict[str, Any]:
    """The columns of a fresh queued copy of row `r` (a retry or a clone)."""
    return {"name": r["name"], "ratio": r["ratio"], "seed": r["seed"], "priority": r["priority"],
            "status": Status.QUEUED.value, "config": r["config"],
            "code_version": r["code_version"] or "", "max_attempts": r["max_attempts"],
            "created_at": NOW, "retry_of": retry_of, "factors": r["factors"], "tags": r["tags"]}

"""Column lists the backends share when a whole study is exported and imported (`optical db copy`):
one order for both, so a row read from one store is written unchanged into the other."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any, TypeVar

from engine.store.records import Event, Experiment, MetricPoint

#: Every column of an experiment row, in the order `experiment_values` returns them.
EXPERIMENT_COLUMNS = (
    "id", "name", "ratio", "seed", "priority", "status", "config", "code_version", "attempts", "max_attempts",
    "created_at", "started_at", "finished_at", "heartbeat_at", "worker_id", "cancel_requested", "error",
    "step", "total_steps", "device", "provenance", "retry_of", "factors", "attempt_started_at",
    "attempt_start_step", "tags", "note",
)
EVENT_COLUMNS = ("id", "experiment_id", "time", "kind", "message")
#: The metric id column is `rowid` in SQLite and `id` in PostgreSQL; the rest are shared.
METRIC_VALUE_COLUMNS = ("experiment_id", "key", "step", "value", "time")

T = TypeVar("T")

#: Tables whose ids are handed out once and never again (StudyExport.last_ids).
ID_TABLES = ("experiments", "metrics", "events")


def experiment_values(e: Experiment) -> tuple[Any, ...]:
    """An experiment as a row of EXPERIMENT_COLUMNS (JSON columns as sorted-key text)."""
    return (e.id, e.name, e.ratio, e.seed, e.priority, e.status.value, json.dumps(e.config, sort_keys=True),
            e.code_version, e.attempts, e.max_attempts, e.created_at, e.started_at, e.finished_at,
            e.heartbeat_at, e.worker_id, e.cancel_requested, e.error, e.step, e.total_steps, e.device,
            json.dumps(e.provenance, sort_keys=True), e.retry_of, json.dumps(e.factors, sort_keys=True),
            e.attempt_started_at, e.attempt_start_step, tags_text(e.tags), e.note)


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
        return (f"{location} is not empty ({rows['experiments']} experiments, {rows['metrics']} metric "
                f"points, {rows['events']} events): copy into a new, empty database")
    if any(last_ids.values()):
        return (f"{location} held data before (ids up to {max(last_ids.values())} were handed out): "
                "copy into a new, empty database")
    return None


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of up to `size` items (itertools.batched needs Python 3.12)."""
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk

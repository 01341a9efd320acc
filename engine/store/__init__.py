"""The experiment store: the only package with SQL. `open_store(location)` picks the backend.

- a path or `sqlite:///path` → `SqliteStore` (engine/store/sqlite.py), the embedded default;
- `postgresql://user:password@host:port/dbname` → `PostgresStore` (engine/store/postgres.py),
  one queue shared by many boxes.

Both keep the contract written in engine/store/base.py and hand out the records of
engine/store/records.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from engine.errors import LeaseLost, StoreError
from engine.store.base import PointRow, Store
from engine.store.locations import (
    DEFAULT_DB,
    is_postgres,
    is_url,
    redact,
    resolve_location,
    sqlite_path,
    unknown_scheme,
)
from engine.store.records import (
    Event,
    Experiment,
    MetricPoint,
    NewExperiment,
    RunLease,
    WorkerInfo,
)

__all__ = [
    "DEFAULT_DB",
    "Event",
    "Experiment",
    "LeaseLost",
    "MetricPoint",
    "NewExperiment",
    "PointRow",
    "RunLease",
    "Store",
    "WorkerInfo",
    "is_url",
    "open_store",
    "redact",
    "resolve_location",
    "sqlite_path",
]


def open_store(location: str | Path, *, clock: Callable[[], float] = time.time) -> Store:
    """Open (creating and migrating as needed) the store at a path or URL."""
    text = str(location)
    path = sqlite_path(text)
    if path is not None:
        from engine.store.sqlite import SqliteStore

        if not str(path):
            raise StoreError(f"--db {text}: no file name")
        return SqliteStore(path, clock=clock)
    if is_postgres(text):
        from engine.store.postgres import PostgresStore

        return PostgresStore(text, clock=clock)
    raise unknown_scheme(text)

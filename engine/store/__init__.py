"""The experiment store: the only package with SQL. `open_store(location)` picks the backend.

- a path or `sqlite:///path` → `SqliteStore` (engine/store/sqlite.py), the embedded default;
- `postgresql://user:password@host:port/dbname` → `PostgresStore` (engine/store/postgres.py),
  one queue shared by many boxes.

Both keep the contract written in engine/store/base.py and hand out the records of
engine/store/records.py.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from engine.errors import LeaseLost, StoreError
from engine.store.base import PointRow, Store
from engine.store.records import Event, Experiment, MetricPoint, NewExperiment, RunLease, WorkerInfo

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

#: Where the queue lives when neither --db nor OPTICAL_DB says otherwise.
DEFAULT_DB = "experiments.db"
_PG_SCHEMES = ("postgresql", "postgres")


def resolve_location(value: str | Path | None) -> str:
    """--db, else env OPTICAL_DB, else ./experiments.db."""
    return str(value or os.environ.get("OPTICAL_DB") or DEFAULT_DB)


def is_url(location: str) -> bool:
    return "://" in location


def sqlite_path(location: str | Path) -> Path | None:
    """The file of an SQLite location (`PATH` or `sqlite:///PATH`); None for a server URL."""
    text = str(location)
    if not is_url(text):
        return Path(text)
    parts = urlsplit(text)
    if parts.scheme == "sqlite":
        if parts.netloc:
            raise StoreError(f"--db {text}: write sqlite:///relative/path or sqlite:////absolute/path "
                             "(three slashes, no host)")
        return Path(parts.path.removeprefix("/"))
    return None


def open_store(location: str | Path, *, clock: Callable[[], float] = time.time) -> Store:
    """Open (creating and migrating as needed) the store at a path or URL."""
    text = str(location)
    path = sqlite_path(text)
    if path is not None:
        from engine.store.sqlite import SqliteStore

        if not str(path):
            raise StoreError(f"--db {text}: no file name")
        return SqliteStore(path, clock=clock)
    scheme = urlsplit(text).scheme
    if scheme in _PG_SCHEMES:
        from engine.store.postgres import PostgresStore

        return PostgresStore(text, clock=clock)
    raise StoreError(f"--db {redact(text)}: unknown scheme {scheme!r}; use a file path, sqlite:///PATH "
                     "or postgresql://user:password@host:port/dbname")


def redact(location: str) -> str:
    """A URL without its password, for messages and titles."""
    if not is_url(location):
        return location
    parts = urlsplit(location)
    if parts.password is None:
        return location
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()

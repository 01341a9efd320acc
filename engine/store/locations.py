"""Where a store lives: the `--db` value (a path, `sqlite:///PATH` or a PostgreSQL URL), read
in one place so every launcher, title and message names a database the same way."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from engine.errors import StoreError

#: Where the queue lives when neither --db nor OPTICAL_DB says otherwise.
DEFAULT_DB = "experiments.db"
PG_SCHEMES = ("postgresql", "postgres")


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
            raise StoreError(f"--db {text}: write sqlite:///relative/path or "
                             "sqlite:////absolute/path (three slashes, no host)")
        return Path(parts.path.removeprefix("/"))
    return None


def is_postgres(location: str) -> bool:
    return urlsplit(location).scheme in PG_SCHEMES


def unknown_scheme(location: str) -> StoreError:
    return StoreError(f"--db {redact(location)}: unknown scheme {urlsplit(location).scheme!r}; "
                      "use a file path, sqlite:///PATH "
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

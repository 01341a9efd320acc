"""`optical db copy SRC DST`: a whole study from one store to another (SQLite ⇄ PostgreSQL).

Every experiment (all columns, same ids), metric point and event is copied, read in one snapshot
of the source and written in one transaction into the destination, which must be new and empty.
The destination's ids continue after the highest id the source ever handed out. Workers are not
copied: their rows describe processes attached to the source.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from engine.errors import StoreError
from engine.store import open_store, redact, sqlite_path


def _same_database(a: str, b: str) -> bool:
    pa, pb = sqlite_path(a), sqlite_path(b)
    if pa is not None and pb is not None:
        return pa.resolve() == pb.resolve()
    if pa is None and pb is None:
        sa, sb = urlsplit(a), urlsplit(b)
        return (sa.hostname, sa.port, sa.path) == (sb.hostname, sb.port, sb.path)
    return False


def copy_study(src: str, dst: str) -> dict[str, int]:
    """Copy everything from `src` into the empty store `dst` (paths or URLs); returns the counts.
    On any error nothing is written (a destination file this call created is removed again)."""
    src_file = sqlite_path(src)
    if src_file is not None and not src_file.is_file():
        raise StoreError(f"{src}: no such database file (the source must exist)")
    if _same_database(src, dst):
        raise StoreError(f"{redact(src)} and {redact(dst)} are the same database")
    dst_file = sqlite_path(dst)
    created = dst_file is not None and not dst_file.exists()
    try:
        with (open_store(src) as source, open_store(dst) as destination,
              source.export_study() as study):
            return destination.import_study(study)
    except BaseException:
        if created and dst_file is not None:
            for leftover in (dst_file, Path(f"{dst_file}-wal"), Path(f"{dst_file}-shm")):
                if leftover.exists():
                    os.unlink(leftover)
        raise

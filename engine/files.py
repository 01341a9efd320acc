"""File operations several engine modules need: publish a finished folder in one step, and read
a JSON object that may be missing, half-written or from another program.

Why one module: an export, a tracker folder and a run folder's marker must all either appear
whole or not at all, and their readers must treat a damaged file as "not ours" rather than
crash a worker or a report.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any


def replace_dir(tmp: Path, out: Path) -> None:
    """Move the finished folder `tmp` to `out`, replacing an earlier `out` only once `tmp` is
    complete (a reader sees the old folder or the new one, never a mix)."""
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def read_json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`; None when the file is missing, unreadable, not JSON, or holds
    something other than an object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None

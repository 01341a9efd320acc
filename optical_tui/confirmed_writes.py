"""User-requested writes: confirmed, run in a thread worker on their own connection, notified.

The dashboard never writes on its own; these are the only places that do, and only after the
user confirmed. Errors a user can cause (`OpticalError`) become a notification, never a crash.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from textual.app import App

from engine.errors import OpticalError
from engine.statuses import Status
from engine.store import Experiment, NewExperiment, Store, open_store
from engine.sweep import duplicates, factors_text
from optical_tui.console import safe
from optical_tui.routes import routes
from optical_tui.screens.confirm import ConfirmScreen


def submit(app: App[Any], title: str, op: Callable[[Store], str]) -> None:
    """Run `op` against a fresh Store off the UI thread; notify its message or its error."""
    route = routes(app)
    location = route.db_location

    def work() -> None:
        try:
            with open_store(location) as store:
                message = op(store)
        except OpticalError as exc:
            app.call_from_thread(partial(app.notify, safe(str(exc)), title=title, severity="error",
                                         timeout=8,
                                       markup=False))
            return
        app.call_from_thread(partial(app.notify, safe(message), title=title, markup=False))
        app.call_from_thread(route.poll_now)

    app.run_worker(work, thread=True, group="requests", name=title)


def _ids(exps: Sequence[Experiment]) -> str:
    return ", ".join(f"#{e.id}" for e in exps)


def _describe(e: Experiment) -> str:
    # The name is stored verbatim: show its control characters escaped (ConfirmScreen shows Text).
    factors = f", {factors_text(e.factors)}" if e.factors else ""
    return safe(f"#{e.id} {e.name} (ratio {e.ratio}{factors}, seed {e.seed}, {e.status})")


def confirm_then(app: App[Any], question: str, yes_label: str, title: str,
                 op: Callable[[Store], str]) -> None:
    def answered(yes: bool | None) -> None:
        if yes:
            submit(app, title, op)

    app.push_screen(ConfirmScreen(question, yes_label), answered)


def cancel(app: App[Any], e: Experiment) -> None:
    def op(store: Store) -> str:
        (done,) = store.request_cancel([e.id])
        return (f"#{e.id} cancelled" if done.status == Status.CANCELLED
                else f"#{e.id}: cancel requested")
    what = "stop the run within seconds" if e.status == Status.RUNNING else "never run"
    confirm_then(app, f"Cancel {_describe(e)}?\nIt will {what}.", "Cancel it", "cancel", op)


def retry(app: App[Any], e: Experiment) -> None:
    def op(store: Store) -> str:
        return f"#{e.id} retried as {_ids(store.retry([e.id]))} (queued)"
    confirm_then(app, f"Retry {_describe(e)}?\nA fresh copy is queued; this run stays as it is.",
                 "Retry", "retry", op)


def clone(app: App[Any], e: Experiment) -> None:
    def op(store: Store) -> str:
        return f"#{e.id} cloned as {_ids(store.clone([e.id]))} (queued)"
    confirm_then(app, f"Clone {_describe(e)}?\nA copy with the same frozen config is queued.",
                 "Clone", "clone", op)


def delete(app: App[Any], e: Experiment) -> None:
    def op(store: Store) -> str:
        from engine.run_dirs import remove_run_dirs, runs_root

        store.remove([e.id])
        remove_run_dirs([e], runs_root(store.location))  # checkpoints and logs: it never runs again
        return f"removed #{e.id} with its metrics and events"
    confirm_then(app,
                 f"Delete {_describe(e)}?\nIts metrics and events are deleted too. This cannot be "
                 "undone.",
                 "Delete", "delete", op)


def add(app: App[Any], specs: Sequence[NewExperiment]) -> None:
    def op(store: Store) -> str:
        from engine.running.provenance import code_version  # runs git: keep it off the UI thread

        version = code_version()
        repeated = duplicates(store, specs)  # the form queues what it was given, and says so
        added = store.add_experiments([dataclasses.replace(s, code_version=version) for s in specs])
        note = (f" (note: repeats {len(repeated)} experiment(s) the sweep already has: "
                f"{_ids(repeated)})" if repeated else "")
        return f"queued {len(added)} experiment(s): {_ids(added)}{note}"
    submit(app, "new experiment", op)

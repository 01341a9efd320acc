"""The keys that act on one experiment, shared by the queue (on its selected row) and the
experiment screen (on its own run): cancel, retry, clone, delete, and the ratio study of its
sweep. Each screen has the `action_<name>` methods; every write goes through confirmed_writes."""

from __future__ import annotations

from textual.binding import Binding

#: (action, description, tooltip): `{run}` names the experiment acted on ("the selected", "this").
_WRITES = (
    ("cancel", "Cancel", "cancel {run} experiment (asks first)"),
    ("retry", "Retry", "queue a fresh copy of {run} failed/cancelled run (asks first)"),
    ("clone", "Clone", "queue a copy of {run} experiment, same frozen config (asks first)"),
    ("delete", "Delete", "delete {run} experiment with its metrics (asks first)"),
)
_STUDY_TIP = "ratio study of {run} experiment's sweep"


def write_bindings(run: str, *, show: bool, delete: str = "d") -> list[Binding]:
    """`c` cancel, `r` retry, `y` clone and `delete` (keys) delete; `show`: in the footer."""
    keys = ("c", "r", "y", delete)
    return [Binding(key, action, description, show=show, tooltip=tip.format(run=run))
            for key, (action, description, tip) in zip(keys, _WRITES, strict=True)]


def study_binding(run: str) -> Binding:
    """`t`: the ratio study of the experiment's sweep."""
    return Binding("t", "study", "Ratio study", tooltip=_STUDY_TIP.format(run=run))

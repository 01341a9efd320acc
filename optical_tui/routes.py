"""The typed route from a screen to the app: what screens may ask of the dashboard.

Screens never import the app (the app imports them); they call `routes(self)`, which returns
the running app typed as this protocol, so the type checker sees every attribute they use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from textual.dom import DOMNode

from optical_tui.messages import ExperimentsChanged


@runtime_checkable
class DashboardRoutes(Protocol):
    db_location: str
    clock: Callable[[], float]
    live: ExperimentsChanged | None

    @property
    def display_location(self) -> str: ...

    def open_experiment(self, exp_id: int) -> None: ...
    def open_study(self, name: str) -> None: ...
    def open_compare(self, ids: list[int]) -> None: ...
    def open_new_experiment(self) -> None: ...
    def queue_filter(self, status: str | None) -> None: ...
    def queue_sort(self, by: str) -> None: ...
    def poll_now(self) -> None: ...
    def action_help(self) -> None: ...


def routes(node: DOMNode) -> DashboardRoutes:
    app = node.app
    if not isinstance(app, DashboardRoutes):  # pragma: no cover - a screen outside OpticalApp
        raise TypeError(f"{type(app).__name__} is not the optical-tui dashboard")
    return app

"""`optical-tui`: the Textual dashboard. Composes the screens and wires the background reader.

Dependencies are injected (`OpticalApp(db_location, poll_interval, clock)`); nothing touches the
database at import time. A thread worker (`optical_tui.poller`) reads on its own connection and
posts messages (`optical_tui.messages`); the app hands copies down to the open screens. Screens
reach the app only through `optical_tui.routes.DashboardRoutes`, which this class implements.
Writes happen only when the user asks (`optical_tui.confirmed_writes`). Options are parsed in
`optical_tui.commands.ui`, for `optical-tui` and `optical ui` alike.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import ClassVar

from textual.app import App
from textual.binding import Binding, BindingType

from engine.store import NewExperiment, redact
from optical_tui import confirmed_writes
from optical_tui.alerts import Alerts
from optical_tui.messages import EventsAppended, ExperimentsChanged, MetricsAppended, PollFailed
from optical_tui.palette import OpticalCommands
from optical_tui.poller import poll_forever
from optical_tui.screens.compare import CompareScreen
from optical_tui.screens.confirm import ConfirmScreen
from optical_tui.screens.experiment import ExperimentScreen
from optical_tui.screens.help import HelpScreen
from optical_tui.screens.new_experiment import NewExperimentScreen
from optical_tui.screens.queue import QueueScreen
from optical_tui.screens.ratio_study import RatioStudyScreen

LIVE_SCREENS = (QueueScreen, ExperimentScreen, RatioStudyScreen, CompareScreen)
NAVIGATION = [
    Binding("up,down", "", "move the cursor (tables), scroll (text)"),
    Binding("pageup,pagedown,home,end", "", "page through tables"),
    Binding("tab,shift+tab", "", "move focus between widgets"),
    Binding("left,right", "", "switch tabs when the tab bar has focus"),
]


class OpticalApp(App[None]):
    TITLE = "optical-tui"
    CSS_PATH = "app.tcss"
    COMMANDS = App.COMMANDS | {OpticalCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit",
                tooltip="quit the dashboard (runs keep going in their workers)"),
        Binding("question_mark", "help", "Help", tooltip="this list of every key binding"),
        Binding("ctrl+p", "command_palette", "Palette", show=False,
                tooltip="command palette: open an experiment or sweep, queue, filter, sort"),
    ]

    def __init__(self, db_location: str, poll_interval: float = 1.0,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.db_location = str(db_location)
        self.poll_interval = poll_interval
        self.clock = clock
        self.live: ExperimentsChanged | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._alerts = Alerts()

    def on_mount(self) -> None:
        self.push_screen(QueueScreen())
        reader = partial(poll_forever, self.post_message, self.db_location, self.poll_interval,
                         self._stop, self._wake)
        self.run_worker(reader, thread=True, group="poller", name="poller", exit_on_error=False)

    def on_unmount(self) -> None:
        self._stop.set()
        self._wake.set()

    def poll_now(self) -> None:
        """Read at once (after a user's write) instead of waiting for the next tick."""
        self._wake.set()

    # ----------------------------------------------------------------- messages down

    @property
    def display_location(self) -> str:
        return redact(self.db_location)

    def _forward(self, message: ExperimentsChanged | MetricsAppended | EventsAppended) -> None:
        for screen in self.screen_stack:
            if isinstance(screen, LIVE_SCREENS):
                screen.post_message(dataclasses.replace(message))

    def on_experiments_changed(self, message: ExperimentsChanged) -> None:
        self.live = message
        self._forward(message)
        for notice in self._alerts.update(message.experiments, message.primary):
            self.notify(notice.body, title=notice.title,
                        severity="error" if notice.failure else "information",
                        timeout=20, markup=False)
            self.bell()

    def on_metrics_appended(self, message: MetricsAppended) -> None:
        self._forward(message)

    def on_events_appended(self, message: EventsAppended) -> None:
        self._forward(message)

    def on_poll_failed(self, message: PollFailed) -> None:
        self.notify(message.error, title="database", severity="error", timeout=10, markup=False)

    # ----------------------------------------------------------------- navigation

    def open_experiment(self, exp_id: int) -> None:
        found = next((e for e in self.live.experiments if e.id == exp_id),
                     None) if self.live else None
        if found is None:
            self.notify(f"no experiment #{exp_id}", severity="warning")
            return
        self.push_screen(ExperimentScreen(found))

    def open_study(self, name: str) -> None:
        if self.live is None:
            self.notify("still loading", severity="warning")
            return
        if isinstance(self.screen, RatioStudyScreen):
            self.pop_screen()
        self.push_screen(RatioStudyScreen(name, self.live.experiments))

    def open_compare(self, ids: list[int]) -> None:
        known = {e.id: e for e in self.live.experiments} if self.live else {}
        runs = [known[i] for i in ids if i in known]
        if len(runs) < 2:
            self.notify("Compare needs two or more experiments: mark them with space in the queue.",
                        severity="warning")
            return
        self.push_screen(CompareScreen(runs))

    def open_new_experiment(self) -> None:
        def queued(specs: list[NewExperiment] | None) -> None:
            if specs:
                confirmed_writes.add(self, specs)

        self.push_screen(NewExperimentScreen(), queued)

    def _queue_screen(self) -> QueueScreen:
        while not isinstance(self.screen, QueueScreen) and len(self.screen_stack) > 2:
            self.pop_screen()
        return next(s for s in self.screen_stack if isinstance(s, QueueScreen))

    def queue_filter(self, status: str | None) -> None:
        self._queue_screen().action_filter(status)

    def queue_sort(self, by: str) -> None:
        self._queue_screen().action_sort(by)

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen([
            ("Everywhere", self.BINDINGS),
            ("Queue", QueueScreen.BINDINGS),
            ("Experiment", ExperimentScreen.BINDINGS),
            ("Ratio study", RatioStudyScreen.BINDINGS),
            ("Compare", CompareScreen.BINDINGS),
            ("New experiment form", NewExperimentScreen.BINDINGS),
            ("Confirmation", ConfirmScreen.BINDINGS),
            ("Navigation", NAVIGATION),
        ]))

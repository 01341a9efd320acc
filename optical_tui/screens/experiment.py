"""One experiment: live per-language curves, groups, losses, the eval table, config, events and
the error."""

from __future__ import annotations

import time
from functools import partial
from typing import ClassVar, cast

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.reactive import var
from textual.widgets import DataTable, Footer, Header, Static, TabbedContent, TabPane

from engine.errors import OpticalError
from engine.metric_keys import LOSS_KEYS, MetricName, Setting, TrainKey
from engine.statuses import EventKind, Status
from engine.store import Event, Experiment, MetricPoint, open_store
from engine.sweep import factors_text
from optical_tui import confirmed_writes
from optical_tui.console import safe, safe_text
from optical_tui.experiment_data import (
    History,
    config_lines,
    curve_keys,
    eval_table,
)
from optical_tui.messages import EventsAppended, ExperimentsChanged, MetricsAppended
from optical_tui.routes import routes
from optical_tui.screens.metric_switch import MetricSwitchScreen, switch_bindings
from optical_tui.screens.run_keys import study_binding, write_bindings
from optical_tui.status_style import status_text
from optical_tui.widgets.cells import eta, metric_value, progress_bar
from optical_tui.widgets.curves import CurvePlot, Series, points
from optical_tui.widgets.tables import fill

TABS = ("curves", "training", "evaluation", "config", "events", "error")


class ExperimentScreen(MetricSwitchScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back",
                tooltip="back to the previous screen"),
        *switch_bindings(explain=True),
        Binding("g", "groups", "Lang/groups",
                tooltip="curves per query language, or per resource group (high/low) + macro"),
        Binding("right_square_bracket", "tab(1)", "Next tab",
                tooltip="next tab: curves, training, evaluation, config, events, error"),
        Binding("left_square_bracket", "tab(-1)", "Prev tab", show=False,
                tooltip="previous tab"),
        Binding("e", "show_tab('error')", "Error", show=False,
                tooltip="the traceback of a failed run"),
        study_binding("this"),
        *write_bindings("this", show=False),
    ]

    #: The row as the poller last read it (set in __init__, so never None when read).
    experiment: var[Experiment] = var(cast(Experiment, None), init=False)
    #: Curves per query language, or per resource group (`g`).
    view: var[str] = var("languages", init=False)
    #: Every metric point read so far, mutated in place (`mutate_reactive`). Its watcher paints
    #: the first frame too (init), right after on_mount.
    history: var[History] = var(History)

    def __init__(self, experiment: Experiment) -> None:
        super().__init__(id=f"experiment-{experiment.id}")
        self.set_reactive(ExperimentScreen.experiment, experiment)
        self.events: list[Event] = []
        self.loaded = False
        self._stale: set[str] = set()
        self._removed = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="exp-summary")
        with TabbedContent(id="exp-tabs", initial="curves"):
            with TabPane("Curves", id="curves"):
                yield Static(id="curve-controls")
                yield CurvePlot("MLQA-R", id="curve")
            with TabPane("Training", id="training"):
                yield CurvePlot("training losses", id="losses")
                yield CurvePlot("learning rate", id="lr", classes="short")
            with TabPane("Evaluation", id="evaluation"):
                yield Static(id="eval-caption")
                yield DataTable(id="eval-table", cursor_type="none", zebra_stripes=True)
            with TabPane("Config", id="config"), VerticalScroll():
                yield Static(id="config-text")
            with TabPane("Events", id="events"):
                yield DataTable(id="events-table", cursor_type="row", zebra_stripes=True)
            with TabPane("Error", id="error"), VerticalScroll():
                yield Static(id="error-text")
        yield Footer()

    def on_mount(self) -> None:
        self.title = f"experiment #{self.experiment.id}"
        self.sub_title = safe(self.experiment.name)
        events = self.query_one("#events-table", DataTable)
        events.add_columns("time", "kind", "message")
        self._show_summary()
        self._show_config()
        self._load_history()

    # ----------------------------------------------------------------- loading and live data

    @work(thread=True, exclusive=True, group="history")
    def _load_history(self) -> None:
        """The experiment's history, read on its own connection off the UI thread."""
        try:
            with open_store(routes(self).db_location) as store:
                metrics = store.metrics(self.experiment.id)
                events = store.events(self.experiment.id)
        except OpticalError as exc:
            self.app.call_from_thread(
                partial(self.notify, safe(str(exc)), severity="error", markup=False))
            return
        self.app.call_from_thread(self._history_loaded, metrics, events)

    def _history_loaded(self, metrics: list[MetricPoint], events: list[Event]) -> None:
        self.history.add(metrics)
        known = {ev.id for ev in self.events}
        self._add_events([ev for ev in events if ev.id not in known])
        self.loaded = True
        self.mutate_reactive(ExperimentScreen.history)

    def on_metrics_appended(self, message: MetricsAppended) -> None:
        mine = [m for m in message.metrics if m.experiment_id == self.experiment.id]
        if mine and self.history.add(mine):
            self.mutate_reactive(ExperimentScreen.history)

    def on_events_appended(self, message: EventsAppended) -> None:
        known = {ev.id for ev in self.events}
        self._add_events([ev for ev in message.events
                          if ev.experiment_id == self.experiment.id and ev.id not in known])

    def on_experiments_changed(self, message: ExperimentsChanged) -> None:
        current = next((e for e in message.experiments if e.id == self.experiment.id), None)
        if current is None:
            if not self._removed:
                self._removed = True
                self.notify(f"experiment #{self.experiment.id} was removed", severity="warning")
            if self.app.screen is self:   # never pop a screen the user opened on top of this one
                self.app.pop_screen()
            return
        self.experiment = current  # the summary repaints only when the row changed

    def on_screen_resume(self) -> None:
        if self._removed:
            self.app.pop_screen()

    # ----------------------------------------------------------------- drawing

    def _show_summary(self) -> None:
        e = self.experiment
        now = routes(self).clock()
        # Stored strings (name, device, error) through `safe`: never raw control characters.
        factors = f"  {factors_text(e.factors)}" if e.factors else ""
        text = Text.assemble(
            (f"#{e.id} ", "bold"), safe_text(e.name, "bold"),
            safe(f"  ratio {e.ratio}{factors}  seed {e.seed}  "),
            status_text(e.status),
            "  ", progress_bar(e), f" {e.step}/{e.total_steps}" if e.total_steps else "",
            safe(f"  {'' if e.status != Status.RUNNING else 'ETA '}"
                 f"{eta(e, now).replace('-', '')}  device {e.device or '-'}  "
                 f"tries {e.attempts}/{e.max_attempts}"),
        )
        if e.cancel_requested and e.status == Status.RUNNING:
            text.append("  cancel requested", style="yellow")
        if e.tags:
            text.append_text(safe_text("  tags " + " ".join(e.tags), "magenta"))
        if e.note:
            text.append_text(safe_text("\nnote: " + e.note.strip().splitlines()[0], "italic"))
        if e.error:
            last = e.error.strip().splitlines()[-1] if e.error.strip() else e.error
            text.append(f"\n✘ {safe(last)}  (e shows the traceback)", style="red")
        self.query_one("#exp-summary", Static).update(text)
        self.query_one("#error-text", Static).update(
            safe_text(e.error, "red", lines=True) if e.error
            else Text("No error recorded for this run.", style="dim"))

    def _show_config(self) -> None:
        e = self.experiment
        lines = config_lines(e.config)
        if e.provenance:
            lines += ["# provenance"] + [f"# {k} = {v}" for k, v in sorted(e.provenance.items())]
        lines.append(f"# code version {e.code_version or '-'}")
        self.query_one("#config-text", Static).update(safe_text("\n".join(lines), lines=True))

    def _add_events(self, events: list[Event]) -> None:
        if not events:
            return
        self.events += events
        table = self.query_one("#events-table", DataTable)
        for ev in events:
            stamp = time.strftime("%m-%d %H:%M:%S", time.localtime(ev.time))
            warning = ev.kind in (EventKind.REQUEUED, EventKind.WARNING)
            style = "red" if ev.kind == EventKind.FAILED else "yellow" if warning else ""
            table.add_row(stamp, safe_text(ev.kind, style), safe_text(ev.message))

    def _show_plots(self) -> None:
        """Draw only the visible tab; the others are drawn when they are shown."""
        active = self.query_one("#exp-tabs", TabbedContent).active
        self._stale = {"curves", "training", "evaluation"} - {active}
        if active == "curves":
            self._draw_curves()
        elif active == "training":
            self._draw_training()
        elif active == "evaluation":
            self._draw_eval_table()

    @on(TabbedContent.TabActivated, "#exp-tabs")
    def _tab_shown(self, event: TabbedContent.TabActivated) -> None:
        tab = event.pane.id or ""
        if tab in self._stale:
            self._stale.discard(tab)
            {"curves": self._draw_curves, "training": self._draw_training,
             "evaluation": self._draw_eval_table}[tab]()

    # What each reactive repaints: the summary follows the row; the plots and the eval table
    # follow the points and the switches.
    watch_experiment = _show_summary
    watch_history = watch_setting = watch_metric = watch_view = _show_plots

    def _draw_curves(self) -> None:
        cfg = self.experiment.config
        series = [Series(label, *points(self.history.get(key)))
                  for label, key in curve_keys(cfg, self.setting, self.metric, self.view)]
        name = Setting(self.setting).label
        view = "resource groups" if self.view == "groups" else "per query language"
        self.query_one("#curve-controls", Static).update(Text.assemble(
            ("setting ", "dim"), (name, "bold"), ("  metric ", "dim"), (self.metric, "bold"),
            ("  view ", "dim"), (view, "bold"),
            ("    1/2/3 Mo/Cr/Mul · m metric · g languages/groups · * zero-shot", "dim")))
        empty = "loading…" if not self.loaded else "no evaluation points yet"
        self.query_one("#curve", CurvePlot).show(
            series, title=f"quick eval {name} {self.metric}, {view}", empty=empty)

    def _draw_training(self) -> None:
        losses = [Series(k.split("/", 1)[1], *points(self.history.get(k))) for k in LOSS_KEYS]
        self.query_one("#losses", CurvePlot).show(
            losses, title="training losses (loss = task + λ·ot)")
        lr = Series("lr", *points(self.history.get(TrainKey.LR)))
        self.query_one("#lr", CurvePlot).show([lr], title="learning rate")

    def _draw_eval_table(self) -> None:
        # Rank distance has its own column; the setting columns then show mAP.
        metric = self.metric if self.metric != MetricName.RANK_DISTANCE else MetricName.MAP
        table = eval_table(self.history, self.experiment.config, metric)
        at = f" at step {table.step}" if table.step is not None else ""
        self.query_one("#eval-caption", Static).update(Text.assemble(
            ("latest ", "dim"), (table.source, "bold"), at, ("  metric ", "dim"), (metric, "bold"),
            ("  rows: query language (* zero-shot), groups, macro mean", "dim")))
        columns = ["query", *table.table.columns]
        digits = [1 if "rank" in col else 3 for col in table.table.columns]
        rows = [[Text(row.label, style="bold" if row.unit.kind != "lang" else ""),
                 *(Text(metric_value(v, d), justify="right") for v, d in zip(row.values, digits))]
                for row in table.table.rows]
        fill(self.query_one("#eval-table", DataTable), columns, rows, keys=columns)

    # ----------------------------------------------------------------- actions

    def action_groups(self) -> None:
        self.view = "groups" if self.view == "languages" else "languages"

    def action_tab(self, delta: int) -> None:
        tabs = self.query_one("#exp-tabs", TabbedContent)
        i = TABS.index(tabs.active) if tabs.active in TABS else 0
        tabs.active = TABS[(i + delta) % len(TABS)]

    def action_show_tab(self, tab: str) -> None:
        self.query_one("#exp-tabs", TabbedContent).active = tab

    def action_study(self) -> None:
        routes(self).open_study(self.experiment.name)

    def action_cancel(self) -> None:
        confirmed_writes.cancel(self.app, self.experiment)

    def action_retry(self) -> None:
        confirmed_writes.retry(self.app, self.experiment)

    def action_clone(self) -> None:
        confirmed_writes.clone(self.app, self.experiment)

    def action_delete(self) -> None:
        confirmed_writes.delete(self.app, self.experiment)

"""The ratio study: final metric against ratio (1:0 … 0:1), high vs low resource, over seeds."""

from __future__ import annotations

from functools import partial
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from engine.errors import OpticalError
from engine.metric_keys import MetricName, Setting, Split, split_prefix
from engine.store import Experiment, MetricPoint, open_store
from optical_tui.messages import ExperimentsChanged, MetricsAppended
from optical_tui.routes import routes
from optical_tui.screens.experiment_data import History
from optical_tui.screens.metric_switch import MetricSwitchMixin
from optical_tui.screens.study_data import STUDY_STATUSES, Study, build_study
from optical_tui.widgets.curves import CurvePlot, Series

HINT = "\nfinal value per run: its full benchmark, else its last quick eval · ~ includes running runs"


class RatioStudyScreen(MetricSwitchMixin, Screen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back",
                tooltip="back to the previous screen"),
        Binding("1", "setting('mo')", "Mo",
                tooltip="setting Mo"),
        Binding("2", "setting('cr')", "Cr",
                tooltip="setting Cr"),
        Binding("3", "setting('mul')", "Mul",
                tooltip="setting Mul"),
        Binding("m", "metric", "Metric",
                tooltip="next metric"),
        Binding("w", "next_sweep", "Next sweep",
                tooltip="the next sweep (experiments sharing a name)"),
    ]

    def __init__(self, name: str, experiments: tuple[Experiment, ...]) -> None:
        super().__init__(id="study-screen")
        self.sweep = name
        self.experiments = experiments
        self.histories: dict[int, History] = {}
        self.setting: str = Setting.MUL
        self.metric: str = MetricName.MAP
        self.loaded = False
        self.study: Study | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="study-summary")
        yield CurvePlot("ratio study", id="study-plot")
        yield DataTable(id="study-table", cursor_type="none", zebra_stripes=True)
        yield Static(id="study-legend")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "ratio study"
        self._load()

    def _members(self) -> list[Experiment]:
        return [e for e in self.experiments if e.name == self.sweep]

    @work(thread=True, exclusive=True, group="study")
    def _load(self) -> None:
        """Final-metric history of every run in the sweep, on its own connection."""
        ids = [e.id for e in self._members() if e.status in STUDY_STATUSES]
        try:
            with open_store(routes(self).db_location) as store:
                rows = {i: store.metrics(i, prefix=split_prefix(Split.FULL)) + store.metrics(i, prefix=split_prefix(Split.QUICK))
                        for i in ids}
        except OpticalError as exc:
            self.app.call_from_thread(partial(self.notify, str(exc), severity="error", markup=False))
            return
        self.app.call_from_thread(self._loaded, self.sweep, rows)

    def _loaded(self, sweep: str, rows: dict[int, list[MetricPoint]]) -> None:
        if sweep != self.sweep:  # the user moved on to another sweep meanwhile
            return
        for i, metrics in rows.items():
            self.histories.setdefault(i, History()).add(metrics)
        self.loaded = True
        self._redraw()

    def on_metrics_appended(self, message: MetricsAppended) -> None:
        ids = {e.id for e in self._members()}
        changed = False
        for m in message.metrics:
            if m.experiment_id in ids and m.key.startswith((split_prefix(Split.FULL), split_prefix(Split.QUICK))):
                changed |= self.histories.setdefault(m.experiment_id, History()).add([m])
        if changed:
            self._redraw()

    def on_experiments_changed(self, message: ExperimentsChanged) -> None:
        before = {e.id: e.status for e in self._members()}
        self.experiments = message.experiments
        after = {e.id: e.status for e in self._members()}
        if before != after:
            # A run joined the study (started, finished) or left it: its history may be missing.
            missing = [i for i, s in after.items() if s in STUDY_STATUSES and i not in self.histories]
            if missing:
                self._load()
            else:
                self._redraw()

    # ----------------------------------------------------------------- drawing

    def _redraw(self) -> None:
        study = build_study(self.sweep, self.experiments, self.histories, self.setting, self.metric)
        self.study = study
        counts = " · ".join(f"{n} {s}" for s, n in sorted(study.counts.items()))
        name = Setting(self.setting).label
        self.query_one("#study-summary", Static).update(Text.assemble(
            ("sweep ", "dim"), (self.sweep, "bold"), f"  ({counts or 'no experiments'})",
            ("  setting ", "dim"), (name, "bold"), ("  metric ", "dim"), (self.metric, "bold"),
            (HINT, "dim"),
        ))
        xs = list(range(len(study.ratios)))
        series = []
        for row in study.rows:
            if row.kind != "group":
                continue
            pts = [(x, c) for x, c in zip(xs, row.cells) if c is not None]
            series.append(Series(f"{row.label} ({' '.join(self._lang(x) for x in study.groups[row.label])})",
                                 [float(x) for x, _ in pts], [c.mean for _, c in pts],
                                 [c.sd for _, c in pts]))
        empty = "loading…" if not self.loaded else "no finished or running runs with evaluations yet"
        self.query_one("#study-plot", CurvePlot).show(
            series, title=f"{name} {self.metric} vs mono:cross ratio (mean ± sd over seeds)",
            xlabel="ratio (mono:cross)", xticks=(xs, list(study.ratios)) if xs else None, empty=empty)
        table = self.query_one("#study-table", DataTable)
        table.clear(columns=True)
        table.add_column("", key="label")
        for r in study.ratios:
            table.add_column(r, key=r)
        for row in study.rows:
            label = Text(f"group {row.label}" if row.kind == "group" else self._lang(row.label),
                         style="bold" if row.kind == "group" else "yellow" if row.zero_shot else "")
            table.add_row(label, *[Text(c.text() if c else "-", justify="right") for c in row.cells])
        zs = ", ".join(study.zero_shot) or "none"
        self.query_one("#study-legend", Static).update(Text.assemble(
            ("* zero-shot ", "yellow"), f"(not in data.train_langs = {', '.join(study.train_langs) or '-'}): {zs}   ",
            ("groups ", "dim"), "  ".join(f"{g}: {' '.join(m)}" for g, m in study.groups.items())))

    def _lang(self, lang: str) -> str:
        zero_shot = self.study.zero_shot if self.study else ()
        return f"{lang}*" if lang in zero_shot else lang

    # ----------------------------------------------------------------- actions

    def action_next_sweep(self) -> None:
        names = sorted({e.name for e in self.experiments})
        if len(names) < 2:
            self.notify("This is the only sweep in the database.")
            return
        self.sweep = names[(names.index(self.sweep) + 1) % len(names)] if self.sweep in names else names[0]
        self.histories, self.loaded = {}, False
        self._redraw()
        self._load()

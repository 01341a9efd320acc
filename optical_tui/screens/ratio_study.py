"""The study screen: final metric against ratio (1:0 … 0:1), high vs low resource, over seeds,
split by every extra factor of the sweep.

The numbers come from `engine.study.core.compute_study`, fed with the histories this screen holds,
and the tables are `engine.study.formats.tables` of that study: `optical report` shows the same
runs, values and cells. Only done runs count; running, queued, failed, cancelled and superseded
runs are listed (the "not counted" line and the runs table), never averaged in.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.reactive import var
from textual.widgets import DataTable, Footer, Header, Static

from engine.errors import OpticalError
from engine.metric_keys import MACRO, MetricName, Setting, Split, Unit, split_prefix
from engine.statuses import Status
from engine.store import Experiment, MetricPoint, open_store
from engine.study.compare import MAX_RUNS
from engine.study.core import (
    SELECTED_STEP_KEY,
    Exclusion,
    Levels,
    Study,
    compute_study,
    sweep_selection,
)
from engine.study.formats import TextTable, excluded_summary, model_line, tables, unit_label
from engine.study.grouping import SPECIAL_KEYS, group_keys, group_study, grouping_table
from optical_tui.console import safe, safe_text
from optical_tui.experiment_data import History
from optical_tui.messages import ExperimentsChanged, MetricsAppended
from optical_tui.routes import routes
from optical_tui.screens.metric_switch import MetricSwitchScreen, switch_bindings
from optical_tui.screens.pick import PickScreen
from optical_tui.widgets.curves import CurvePlot, Series
from optical_tui.widgets.tables import fill

#: What the plot shows per level combination: both resource groups, the macro mean, or one group.
UNIT_VIEWS = ("groups", "macro", "high", "low")
PREFIXES = (split_prefix(Split.FULL), split_prefix(Split.QUICK))


_LINES_TIP = ("plot lines per level: both resource groups, the macro mean, high only, "
              "low only")
_NEXT_TABLE_TIP = ("next table: cells per group, Δ vs baseline, Δ per factor level, "
                   "rank distance, languages, runs")
_COMPARE_CELL_TIP = ("pick a cell (ratio and factor levels) and compare every run behind it: "
                     "curves overlaid, config diff")
_GROUP_BY_TIP = ("group the counted runs by any config key, ratio, seed, name or tags: "
                 "n, mean ± sd and 95% interval (the first table)")


def _wanted(key: str) -> bool:
    return key.startswith(PREFIXES) or key == SELECTED_STEP_KEY


class RatioStudyScreen(MetricSwitchScreen):
    # A short terminal (80×24) cannot hold the summary, a 12-line plot and a 14-line table one
    # under the other: there the summary scrolls in 3 lines, and the plot and the table share
    # what is left, so the table keeps rows to page through (PageDown) and the footer its keys.
    # (The -short rules are in app.tcss, beside the layout they override.)
    VERTICAL_BREAKPOINTS = [(0, "-short"), (36, "-tall")]  # noqa: RUF012 - typed by Screen
    DEFAULT_CSS = """
    #study-view { height: 1; padding: 0 1; background: $boost; }
    """
    SETTING = Binding.Group("Setting")
    TABLE = Binding.Group("Table")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back",
                tooltip="back to the previous screen"),
        *switch_bindings(group=SETTING),
        Binding("g", "units", "Lines", tooltip=_LINES_TIP),
        Binding("left_square_bracket", "table(-1)", "Prev table", group=TABLE,
                tooltip="previous table"),
        Binding("right_square_bracket", "table(1)", "Next table", group=TABLE,
                tooltip=_NEXT_TABLE_TIP),
        Binding("w", "next_sweep", "Sweep", show=False,
                tooltip="the next sweep (experiments sharing a name)"),
        Binding("o", "compare_cell", "Compare cell", show=False, tooltip=_COMPARE_CELL_TIP),
        Binding("b", "group_by", "Group by", show=False, tooltip=_GROUP_BY_TIP),
    ]

    #: The sweep shown (`w` moves on): its watcher starts over, reading the runs' points.
    sweep: var[str] = var("", init=False)
    #: Every row as the poller last read it; the study changes when a member's status does.
    experiments: var[tuple[Experiment, ...]] = var((), init=False)
    #: The status of each run of the sweep: a change (not every poll) reads the newly done runs'
    #: points and repaints.
    statuses: var[dict[int, str]] = var(dict, init=False)
    #: The points of the done runs, by experiment, mutated in place (`mutate_reactive`).
    histories: var[dict[int, History]] = var(dict, init=False)
    #: Which of `study_tables` is shown (`[`/`]`), taken modulo their number.
    table_index: var[int] = var(0, init=False)
    #: What the plot shows per level (`g`); None: chosen by the number of level combinations.
    unit_view: var[str | None] = var(None, init=False)
    #: The config key the first table groups runs by (`b`); always_update: choosing the same key
    #: again still goes back to the first table.
    group_by: var[str | None] = var(None, init=False, always_update=True)

    def __init__(self, name: str, experiments: tuple[Experiment, ...]) -> None:
        super().__init__(id="study-screen")
        self.set_reactive(RatioStudyScreen.sweep, name)
        self.set_reactive(RatioStudyScreen.experiments, experiments)
        self.set_reactive(RatioStudyScreen.statuses, _statuses(experiments, name))
        self.loaded = False
        self.study: Study | None = None
        self._loading: set[int] = set()

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="study-summary-box", can_focus=False):
            yield Static(id="study-summary")
        yield CurvePlot("ratio study", id="study-plot")
        yield Static(id="study-view")
        yield DataTable(id="study-table", cursor_type="none", zebra_stripes=True)
        yield Static(id="study-legend")
        note = ("only done runs count, one per cell and seed (the newest); the others are listed "
                "above and in the runs table · the same study as `optical report`")
        yield Static(Text(note, style="dim"), id="study-note")
        # No palette key here: at 80 columns it would push `q Quit` and `? Help` out (ctrl+p works).
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        self.title = "study"
        self.sub_title = safe(self.sweep)
        # ←/→ scroll a table wider than the screen.
        self.query_one("#study-table", DataTable).focus()
        # The first frame and the first read (set in __init__, statuses get no init watcher call).
        self.mutate_reactive(RatioStudyScreen.statuses)

    def _members(self) -> list[Experiment]:
        return [e for e in self.experiments if e.name == self.sweep]

    def _missing(self) -> list[int]:
        """Done runs whose points are not here yet (only done runs are ever counted)."""
        return [e.id for e in self._members()
                if e.status == Status.DONE and e.id not in self.histories
                and e.id not in self._loading]

    def _load(self, ids: list[int]) -> None:
        self._loading |= set(ids)
        self._read(self.sweep, ids, routes(self).db_location)

    @work(thread=True, group="study")
    def _read(self, sweep: str, ids: list[int], location: str) -> None:
        """The evaluation points of these runs, on their own connection, off the UI thread."""
        try:
            with open_store(location) as store:
                rows = {i: [m for p in PREFIXES for m in store.metrics(i, prefix=p)]
                        + store.metrics(i, keys=[SELECTED_STEP_KEY]) for i in ids}
        except OpticalError as exc:
            self.app.call_from_thread(
                partial(self.notify, safe(str(exc)), severity="error", markup=False))
            self.app.call_from_thread(self._failed, ids)
            return
        self.app.call_from_thread(self._loaded, sweep, rows)

    def _failed(self, ids: list[int]) -> None:
        self._loading -= set(ids)

    def _loaded(self, sweep: str, rows: dict[int, list[MetricPoint]]) -> None:
        self._loading -= set(rows)
        if sweep != self.sweep:  # the user moved on to another sweep meanwhile
            return
        for i, metrics in rows.items():
            self.histories.setdefault(i, History()).add(metrics)
        self.loaded = not self._missing() and not self._loading
        self.mutate_reactive(RatioStudyScreen.histories)

    def on_metrics_appended(self, message: MetricsAppended) -> None:
        changed = False
        for m in message.metrics:
            # Points of runs still running do not count; a run's history is read when it is done.
            if m.experiment_id in self.histories and _wanted(m.key):
                changed |= self.histories[m.experiment_id].add([m])
        if changed:
            self.mutate_reactive(RatioStudyScreen.histories)

    def on_experiments_changed(self, message: ExperimentsChanged) -> None:
        self.experiments = message.experiments

    def watch_experiments(self) -> None:
        self.statuses = _statuses(self.experiments, self.sweep)

    def _watch_statuses(self) -> None:
        """Read the points of the runs newly done; `watch_statuses` (called after this one, by
        Textual) then repaints: loading… until they are here."""
        missing = self._missing()
        if missing:
            self._load(missing)
        self.loaded = not missing and not self._loading

    def watch_sweep(self) -> None:
        self.sub_title = safe(self.sweep)
        self.set_reactive(RatioStudyScreen.histories, {})  # repainted with the statuses
        self.loaded, self.study = False, None
        # Another sweep: other runs, whatever their statuses (always a change, even if equal).
        self.set_reactive(RatioStudyScreen.statuses, _statuses(self.experiments, self.sweep))
        self.mutate_reactive(RatioStudyScreen.statuses)

    # ----------------------------------------------------------------- drawing

    def compute(self) -> Study:
        """The study of this sweep from the histories held here (engine.study.core's rules)."""
        members = self._members()
        return compute_study(members, {i: h.series for i, h in self.histories.items()},
                             selection=sweep_selection(self.sweep), metric=self._ranking_metric(),
                             setting=self.setting)

    def _ranking_metric(self) -> str:
        # Rank distance has its own table and plot view; the study's metric is a ranking metric.
        return MetricName.MAP if self.metric == MetricName.RANK_DISTANCE else self.metric

    def _show(self) -> None:
        """The study of the runs held here: summary, plot, table and legend."""
        if self._missing() or self._loading:
            # A done run's points are still being read: keep showing the previous study rather
            # than one that leaves the run out.
            if self.study is None:
                self.query_one("#study-summary", Static).update(Text("loading…", style="dim"))
            return
        study = self.study = self.compute()
        self._draw_summary(study)
        self._draw_plot(study)
        self._draw_table(study)
        zs = ", ".join(study.zero_shot) or "none"
        self.query_one("#study-legend", Static).update(Text.assemble(
            ("* zero-shot ", "yellow"), f"(not in data.train_langs): {zs}   ",
            ("groups ", "dim"), "  ".join(f"{g}: {' '.join(m)}" for g, m in study.groups.items())))

    # Each choice, each new point and each change of status repaints the study.
    watch_setting = watch_metric = watch_unit_view = watch_table_index = _show
    watch_group_by = watch_histories = watch_statuses = _show

    def _draw_summary(self, study: Study) -> None:
        counted = len(study.runs)
        total = len(self._members())
        # With no run counted nothing is scored yet: naming a benchmark would claim too much.
        source = ("nothing yet (no done run)" if not study.runs
                  else "full benchmark" if study.source == Split.FULL
                  else "quick subset" if study.subset else "quick eval (whole benchmark)")
        text = Text.assemble(
            ("sweep ", "dim"), safe_text(self.sweep, "bold"),
            ("  setting ", "dim"), (Setting(self.setting).label, "bold"),
            ("  metric ", "dim"), (self.metric, "bold"),
            ("  scored on ", "dim"), (source, "bold"),
            ("  counted ", "dim"), (f"{counted} of {total} runs", "bold"),
        )
        text.append("\n" + model_line(study), style="dim")
        if study.factors:
            text.append("\nfactors: " + "  ".join(f"{f} ({', '.join(study.levels[f])})"
                                                  for f in study.factors))
        if study.excluded:
            text.append("\n")
            text.append_text(safe_text(f"not counted: {excluded_summary(study)}", "yellow"))
        for note in study.notes:
            text.append("\n")
            text.append_text(safe_text(f"note: {note}", "yellow"))
        self.query_one("#study-summary", Static).update(text)

    def _view(self, study: Study | None) -> str:
        return self.unit_view or ("groups" if study is None or len(study.panels) <= 2 else "macro")

    def _plot_units(self, study: Study) -> list[Unit]:
        view = self._view(study)
        heads = [u for u in study.units if u.kind == "group"]
        if view == "groups":
            return heads
        if view == "macro":
            return [MACRO]
        return [u for u in heads if u.name == view] or heads

    def _draw_plot(self, study: Study) -> None:
        xs = list(range(len(study.ratios)))
        rank = self.metric == MetricName.RANK_DISTANCE
        table = study.rank_distance if rank else study.summary
        series = []
        for panel in study.panels:
            where = " ".join(f"{f.split('.')[-1]}={v}" for f, v in zip(study.factors, panel))
            for unit in self._plot_units(study):
                label = unit_label(study, unit)
                if unit.kind == "group":
                    langs = study.groups.get(unit.name, ())
                    label += f" ({' '.join(self._lang(study, x) for x in langs)})"
                cells = [(x, s) for x, r in zip(xs, study.ratios)
                         if (s := table.get((panel, r, unit))) is not None and s.n]
                series.append(Series(safe(f"{label} {where}".strip()),
                                     [float(x) for x, _ in cells], [s.mean for _, s in cells],
                                     [s.sd if s.n > 1 else 0.0 for _, s in cells]))
        name = Setting(self.setting).label
        what = "Mul rank distance" if rank else f"{name} {self.metric}"
        empty = "loading…" if not self.loaded else "no done runs with evaluations yet"
        view = {"groups": "resource groups", "macro": "macro mean"}.get(
            self._view(study), f"{self._view(study)} group")
        per = f"{view} per level" if study.factors else view
        self.query_one("#study-plot", CurvePlot).show(
            series, title=f"{what} vs mono:cross ratio: {per} (mean ± sd over seeds; g switches)",
            xlabel="ratio (mono:cross)", xticks=(xs, list(study.ratios)) if xs else None,
            empty=empty)

    def study_tables(self, study: Study | None = None) -> list[TextTable]:
        """The report's tables of this study, then the runs (counted and not)."""
        study = study or self.study
        if study is None:
            return []
        grouped = ([grouping_table(group_study(study, self._members(), (self.group_by,)), study)]
                   if self.group_by else [])
        return [*grouped, *tables(study), runs_table(study)]

    def _draw_table(self, study: Study) -> None:
        shown = self.study_tables(study)
        self.set_reactive(RatioStudyScreen.table_index, self.table_index % len(shown))
        t = shown[self.table_index]
        heads = [x.title.split(" (")[0] for x in shown]
        names = " · ".join(f"[{h}]" if i == self.table_index else h for i, h in enumerate(heads))
        self.query_one("#study-view", Static).update(Text.assemble(
            (f"table {self.table_index + 1}/{len(shown)}: ", "dim"), safe_text(t.title, "bold"),
            ("   [ ] switch", "dim")))
        self.query_one("#study-view", Static).tooltip = safe(names)
        # Numbers right-aligned (the columns after the ratio), labels left; factor keys by their
        # last part when that is unambiguous (`weight` for ot.weight), to save width.
        first = (t.headers.index("ratio") + 1 if "ratio" in t.headers else
                 t.headers.index("n") if "n" in t.headers else 1)
        right = [i >= first and h not in ("counted?", "detail") for i, h in enumerate(t.headers)]
        short = {f: f.rpartition(".")[2] for f in study.factors}
        if len(set(short.values())) < len(short):
            short = {f: f for f in study.factors}
        fill(self.query_one("#study-table", DataTable),
             [safe_text(short.get(h, h), "bold") for h in t.headers],
             [[Text(safe(c), justify="right" if right[i] else "left") for i, c in enumerate(row)]
              for row in t.rows],
             keys=[f"c{i}" for i in range(len(t.headers))])

    @staticmethod
    def _lang(study: Study, lang: str) -> str:
        return f"{lang}*" if lang in study.zero_shot else lang

    # ----------------------------------------------------------------- actions

    def action_units(self) -> None:
        current = self._view(self.study)
        self.unit_view = UNIT_VIEWS[(UNIT_VIEWS.index(current) + 1) % len(UNIT_VIEWS)]

    def action_table(self, delta: int) -> None:
        self.table_index += delta

    def action_compare_cell(self) -> None:
        study = self.study
        if study is None or not (study.runs or study.excluded):
            self.notify("No runs to compare yet.", severity="warning")
            return
        cells: dict[tuple[Levels, str], list[int]] = {}
        for r in study.runs:
            cells.setdefault((r.levels, r.ratio), []).append(r.experiment_id)
        for x in study.excluded:   # behind the cell too: a failed seed is worth a look
            cells.setdefault((x.levels, x.ratio), []).append(x.experiment_id)
        items = [(f"{ratio} {study.panel_label(levels)}".strip() + f": {len(ids)} runs "
                  + " ".join(f"#{i}" for i in ids[:MAX_RUNS]), ",".join(map(str, ids[:MAX_RUNS])))
                 for (levels, ratio), ids in cells.items() if len(ids) > 1]
        if not items:
            self.notify("Every cell has a single run: mark runs in the queue (space) to compare "
                        "them.",
                        severity="warning")
            return

        def chosen(value: str | None) -> None:
            if value:
                routes(self).open_compare([int(i) for i in value.split(",")])

        self.app.push_screen(PickScreen("Compare every run of which cell?", items), chosen)

    def action_group_by(self) -> None:
        study = self.study
        factors = list(study.factors) if study else []
        keys = ["ratio", *factors, *(k for k in SPECIAL_KEYS if k != "ratio"),
                *(k for k in group_keys() if k not in factors)]
        items = [("(none: the study's own tables)", "")] + [(k, k) for k in keys]

        def chosen(value: str | None) -> None:
            if value is not None:
                self.set_reactive(RatioStudyScreen.table_index, 0)  # repainted with group_by
                self.group_by = value or None

        self.app.push_screen(PickScreen("Group the counted runs by which key?", items), chosen)

    def action_next_sweep(self) -> None:
        names = sorted({e.name for e in self.experiments})
        if len(names) < 2:
            self.notify("This is the only sweep in the database.")
            return
        at = names.index(self.sweep) + 1 if self.sweep in names else 0
        self.sweep = names[at % len(names)]


def _statuses(experiments: tuple[Experiment, ...], sweep: str) -> dict[int, str]:
    return {e.id: e.status for e in experiments if e.name == sweep}


def runs_table(study: Study) -> TextTable:
    """Every run of the study: counted ones with their macro value, the others with the reason."""
    rows: list[tuple[Sequence[str], int]] = []
    for r in study.runs:
        value = r.values.get(MACRO)
        rows.append(((f"#{r.experiment_id}", *r.levels, r.ratio, str(r.seed), "counted",
                      f"{value:.3f}" if value is not None else "–", f"step {r.step}"),
                     r.experiment_id))
    for x in study.excluded:
        why = x.status if x.reason == Exclusion.NOT_DONE else x.reason.value
        rows.append(((f"#{x.experiment_id}", *x.levels, x.ratio, str(x.seed), why, "–", x.detail),
                     x.experiment_id))
    return TextTable("Runs: counted and not counted",
                     ("id", *study.factors, "ratio", "seed", "counted?", "macro", "detail"),
                     tuple(tuple(r) for r, _ in sorted(rows, key=lambda x: x[1])))

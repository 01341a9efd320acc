"""Compare runs: their quick-eval curves overlaid (one language, one resource group or the macro
mean), with the config keys that differ and the final numbers beside them.

Opened from the queue (mark runs with space, then `v`) or from the study screen (`o`: every run
behind a cell). The numbers are `engine.study.compare.compare` of the histories held here, the
same function `optical compare` calls.
"""

from __future__ import annotations

from functools import partial
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.reactive import var
from textual.widgets import DataTable, Footer, Header, Static

from engine.errors import OpticalError
from engine.metric_keys import MetricName, Setting, Split, metric_key
from engine.store import Experiment, MetricPoint, open_store
from engine.study.compare import MAX_RUNS, Comparison, compare, views
from optical_tui.console import safe, safe_text
from optical_tui.experiment_data import History
from optical_tui.messages import ExperimentsChanged, MetricsAppended
from optical_tui.routes import routes
from optical_tui.screens.metric_switch import MetricSwitchScreen, switch_bindings
from optical_tui.widgets.curves import CurvePlot, Series, points
from optical_tui.widgets.tables import fill


class CompareScreen(MetricSwitchScreen):
    DEFAULT_CSS = """
    #compare-controls { height: 1; padding: 0 1; background: $boost; }
    #compare-body { height: 1fr; }
    #compare-plot { width: 5fr; min-width: 40; }
    #compare-side { width: 6fr; min-width: 30; }
    #compare-diff { height: auto; max-height: 50%; }
    #compare-final { height: 1fr; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back", tooltip="back to the previous screen"),
        *switch_bindings(),
        Binding(
            "g",
            "view(1)",
            "View",
            tooltip="next view: macro, each resource group, each query language",
        ),
        Binding("G", "view(-1)", "Prev view", show=False, tooltip="previous view"),
    ]

    #: The compared rows as the poller last read them: a status, tag or note shows in the tables.
    runs: var[list[Experiment]] = var(list, init=False)
    #: Each run's points, mutated in place (`mutate_reactive`).
    histories: var[dict[int, History]] = var(dict, init=False)
    #: Which of `views` the plot shows (`g`/`G`), taken modulo their number.
    view_index: var[int] = var(0, init=False)

    def __init__(self, runs: list[Experiment]) -> None:
        super().__init__(id="compare-screen")
        self.set_reactive(CompareScreen.runs, runs[:MAX_RUNS])
        self.set_reactive(CompareScreen.histories, {e.id: History() for e in self.runs})
        self.loaded = False
        self.comparison: Comparison | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="compare-controls")
        with Horizontal(id="compare-body"):
            yield CurvePlot("compare", id="compare-plot")
            with Vertical(id="compare-side"):
                yield DataTable(id="compare-diff", cursor_type="none", zebra_stripes=True)
                yield DataTable(id="compare-final", cursor_type="none", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.title = "compare"
        self.sub_title = " ".join(f"#{e.id}" for e in self.runs)
        self.query_one("#compare-final", DataTable).focus()  # ←/→ scroll it when runs overflow
        # The first frame, "loading…" (set in __init__, the histories get no init watcher call).
        self.mutate_reactive(CompareScreen.histories)
        self._read([e.id for e in self.runs], routes(self).db_location)

    @work(thread=True, group="compare")
    def _read(self, ids: list[int], location: str) -> None:
        """Every run's points, on their own connection, off the UI thread."""
        try:
            with open_store(location) as store:
                rows = {i: store.metrics(i) for i in ids}
        except OpticalError as exc:
            self.app.call_from_thread(
                partial(self.notify, safe(str(exc)), severity="error", markup=False)
            )
            return
        self.app.call_from_thread(self._loaded, rows)

    def _loaded(self, rows: dict[int, list[MetricPoint]]) -> None:
        for i, metrics in rows.items():
            self.histories[i].add(metrics)
        self.loaded = True
        self.mutate_reactive(CompareScreen.histories)

    def on_metrics_appended(self, message: MetricsAppended) -> None:
        mine = [m for m in message.metrics if m.experiment_id in self.histories]
        changed = False
        for m in mine:
            changed |= self.histories[m.experiment_id].add([m])
        if changed:
            self.mutate_reactive(CompareScreen.histories)

    def on_experiments_changed(self, message: ExperimentsChanged) -> None:
        fresh = {e.id: e for e in message.experiments}
        self.runs = [fresh.get(e.id, e) for e in self.runs]  # repaints only if one changed

    # ----------------------------------------------------------------- drawing

    def label(self, e: Experiment) -> str:
        return safe(f"#{e.id} {e.ratio} s{e.seed}" + (f" {' '.join(e.tags)}" if e.tags else ""))

    def _show(self) -> None:
        """The controls line, the plot and both tables, from the reactives below."""
        options = views(self.runs[0].config)
        self.set_reactive(CompareScreen.view_index, self.view_index % len(options))
        view, unit = options[self.view_index]
        name = f"{Setting(self.setting).label} {self.metric}"
        self.query_one("#compare-controls", Static).update(
            Text.assemble(
                ("setting ", "dim"),
                (Setting(self.setting).label, "bold"),
                ("  metric ", "dim"),
                (self.metric, "bold"),
                ("  view ", "dim"),
                (view, "bold"),
                ("    1/2/3 Mo/Cr/Mul · m metric · g/G view", "dim"),
            )
        )
        series = [
            Series(
                self.label(e),
                *points(
                    self.histories[e.id].get(
                        metric_key(Split.QUICK, self.setting, unit, self.metric)
                    )
                ),
            )
            for e in self.runs
        ]
        self.query_one("#compare-plot", CurvePlot).show(
            series,
            title=f"quick eval {name}, {view}",
            empty="loading…" if not self.loaded else "no evaluation points yet",
        )
        self.comparison = compare(
            self.runs,
            {i: h.series for i, h in self.histories.items()},
            metric=self._ranking_metric(),
            setting=self.setting,
        )
        self._draw_diff(self.comparison)
        self._draw_final(self.comparison)

    # Each choice, each new point and each changed row repaints the comparison.
    watch_runs = watch_histories = watch_setting = watch_metric = watch_view_index = _show

    def _ranking_metric(self) -> str:
        return MetricName.MAP if self.metric == MetricName.RANK_DISTANCE else self.metric

    def _headers(self, first: str) -> list[Text]:
        return [Text(first, style="bold"), *(Text(f"#{e.id}", style="bold") for e in self.runs)]

    def _draw_diff(self, c: Comparison) -> None:
        rows = [[safe_text(key), *(safe_text(v) for v in values)]
                for key, values in c.differing.items()]
        if any(e.tags for e in self.runs):
            rows.append([Text("tags", style="italic"),
                         *(safe_text(" ".join(e.tags) or "-") for e in self.runs)])
        if any(e.note for e in self.runs):
            rows.append([Text("note", style="italic"),
                         *(safe_text(e.note.splitlines()[0] if e.note else "-")
                           for e in self.runs)])
        fill(self.query_one("#compare-diff", DataTable),
             self._headers(f"config: {len(c.differing)} differ, {c.same} same"), rows)

    def _draw_final(self, c: Comparison) -> None:
        source = "full" if c.source == Split.FULL else "quick eval"
        rows = []
        for r in (*c.final, *c.languages):
            digits = 1 if r.key.endswith(MetricName.RANK_DISTANCE) else 3
            first = r.values[0]
            cells = [Text("–" if first is None else f"{first:.{digits}f}", justify="right")]
            for v, d in zip(r.values[1:], r.deltas[1:], strict=True):
                cell = Text("–" if v is None else f"{v:.{digits}f}", justify="right")
                if d is not None:  # +.012 rather than +0.012: three runs fit beside the plot
                    delta = (
                        f"{d:+.{digits}f}".replace("0.", ".", 1)
                        if abs(d) < 1
                        else f"{d:+.{digits}f}"
                    )
                    cell.append(f" {delta}", style="green" if d > 0 else "red" if d < 0 else "dim")
                cells.append(cell)
            rows.append([safe_text(r.label), *cells])
        fill(self.query_one("#compare-final", DataTable),
             self._headers(f"{source}, Δ vs #{c.runs[0].id}"), rows)

    # ----------------------------------------------------------------- actions

    def action_view(self, delta: int) -> None:
        self.view_index += delta

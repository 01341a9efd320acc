"""The queue: every experiment with its status, progress, ETA and latest primary metric, live."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.reactive import var
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Label
from textual.widgets.data_table import CellDoesNotExist

from engine.config import ratio_sort_key
from engine.errors import OpticalError
from engine.metric_keys import Split, split_prefix
from engine.statuses import Status
from engine.store import Experiment
from engine.sweep import factors_text
from optical_tui import confirmed_writes
from optical_tui.console import safe_text
from optical_tui.messages import ExperimentsChanged
from optical_tui.routes import routes
from optical_tui.screens.run_keys import study_binding, write_bindings
from optical_tui.status_style import status_text
from optical_tui.widgets.cells import eta, metric_value, progress_bar
from optical_tui.widgets.status_bar import WorkerStatusBar

COLUMNS = (("id", "id"), ("name", "name"), ("ratio", "ratio"), ("factors", "factors"),
           ("tags", "tags"), ("seed", "seed"),
           ("status", "status"),
           ("progress", "progress"), ("eta", "ETA"), ("metric", "Mul mAP"), ("device", "device"),
           ("tries", "tries"))
FILTERS: tuple[Status | None, ...] = (None, *Status)
_STATUS_ORDER = {s: i
                 for i, s in enumerate((Status.RUNNING, Status.QUEUED, Status.FAILED, Status.DONE,
                                               Status.CANCELLED))}


def _ratio_key(e: Experiment) -> float:
    try:
        return ratio_sort_key(e.ratio)
    except OpticalError:  # a hand-edited row must not break the table
        return 0.0


# Each returns a sort key (a number or a tuple): Any, since the shapes differ by column.
SORTS: dict[str, Callable[[Experiment, dict[int, tuple[str, float]]], Any]] = {
    "id": lambda e, p: e.id,
    "name": lambda e, p: (e.name.lower(), _ratio_key(e), e.seed),
    "ratio": lambda e, p: (_ratio_key(e), e.name.lower(), e.seed),
    "status": lambda e, p: (_STATUS_ORDER.get(e.status, 9), -e.priority, e.id),
    "metric": lambda e, p: (-(p[e.id][1]) if e.id in p else float("inf"), e.id),
}


class QueueScreen(Screen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open", show=True,
                tooltip="open the selected experiment: curves, losses, eval table, config, events"),
        Binding("n", "new", "New",
                tooltip="new experiments: ratios × seeds, config file, overrides, priority"),
        *write_bindings("the selected", show=True, delete="d,delete"),
        study_binding("the selected"),
        Binding("s", "sort", "Sort",
                tooltip="cycle the sort: id, name, ratio, status, metric"),
        Binding("f", "filter", "Filter",
                tooltip="cycle the status filter: all, queued, running, done, failed, cancelled"),
        Binding("slash", "search", "Search",
                tooltip="search sweep names, factor values, tags and notes "
                        "(enter returns to the table)"),
        Binding("escape", "clear_search", "Clear search", show=False,
                tooltip="clear the search"),
        Binding("space", "mark", "Mark", show=False,
                tooltip="mark or unmark the selected experiment for a comparison "
                        "(● in the id column)"),
        # Not in the footer (it would push ? Help out at 120 columns); the view label says it once
        # runs are marked.
        Binding("v", "compare", "Compare", show=False,
                tooltip="compare the marked experiments: curves overlaid, config diff, "
                        "final numbers"),
    ]

    #: The poller's latest read (rows, workers, primary metrics): each one repaints what changed.
    live: var[ExperimentsChanged | None] = var(None, init=False, always_update=True)
    #: How the table is sorted (`s`), which status it keeps (`f`) and what it searches (`/`).
    sort: var[str] = var("id", init=False)
    status_filter: var[Status | None] = var(None, init=False)
    search: var[str] = var("", init=False)
    #: The experiments marked for a comparison (space): ● in the id column.
    marked: var[frozenset[int]] = var(frozenset(), init=False)

    def __init__(self) -> None:
        super().__init__(id="queue-screen")
        self._experiments: tuple[Experiment, ...] = ()
        self._primary: dict[int, tuple[str, float]] = {}
        self._rows: dict[int, tuple[object, ...]] = {}
        self._order: list[int] = []
        self._cell_cache: dict[int, tuple[object, tuple[object, ...]]] = {}
        self._columns: tuple[tuple[str, str], ...] = ()

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="queue-bar"):
            yield Input(placeholder="search name  (/)", id="search")
            yield Label(self._view_text(), id="view-label")
        yield DataTable(id="queue", cursor_type="row", zebra_stripes=True)
        yield Label("loading…", id="queue-empty")
        yield WorkerStatusBar(id="status-bar")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "optical-tui"
        self.sub_title = routes(self).display_location
        self.query_one("#queue", DataTable).focus()
        self.live = routes(self).live  # rows read before this screen was shown, if any

    # ----------------------------------------------------------------- live data

    def on_experiments_changed(self, message: ExperimentsChanged) -> None:
        self.live = message

    def watch_live(self, message: ExperimentsChanged | None) -> None:
        if message is None:
            return
        self._experiments, self._primary = message.experiments, message.primary
        self.refresh_table()
        now = message.db_now if message.db_now is not None else routes(self).clock()
        self.query_one(WorkerStatusBar).show(message.workers, message.experiments, now)

    def visible_experiments(self) -> list[Experiment]:
        needle = self.search.lower()
        rows = [e for e in self._experiments
                if (self.status_filter is None or e.status == self.status_filter)
                and (not needle or any(needle in text.lower() for text in (
                    e.name, factors_text(e.factors), " ".join(e.tags), e.note)))]
        return sorted(rows, key=lambda e: SORTS[self.sort](e, self._primary))

    def _cells(self, e: Experiment, now: float) -> tuple[object, ...]:
        primary = self._primary.get(e.id)
        metric = Text(metric_value(primary[1]) if primary else "-",
                      style="bold" if primary and primary[0].startswith(split_prefix(Split.FULL))
                      else "")
        tries = Text(f"{e.attempts}/{e.max_attempts}", style="red" if e.attempts > 1 else "")
        status = status_text(e.status)
        if e.cancel_requested and e.status == Status.RUNNING:
            status.append(" (cancelling)", style="dim")
        # Stored strings through `safe`, as Text: never raw control characters, never markup.
        ident = (Text.assemble(("● ", "bold magenta"), str(e.id)) if e.id in self.marked
                 else str(e.id))
        return (ident, safe_text(e.name), e.ratio,
                safe_text(factors_text(e.factors, short=True) or "-"),
                safe_text(" ".join(e.tags) or "-"), str(e.seed),
                status, progress_bar(e), eta(e, now), metric, safe_text(e.device or "-"), tries)

    def _cached_cells(self, e: Experiment, now: float) -> tuple[object, ...]:
        # Rows that did not change keep their cells; only a running row's ETA moves with the clock.
        key = (e.name, e.ratio, tuple(sorted(e.factors.items(), key=str)), e.seed, e.status, e.step,
               e.total_steps, e.attempts, e.max_attempts,
               e.device, e.cancel_requested, e.started_at, e.finished_at, self._primary.get(e.id),
               e.tags, e.id in self.marked)
        hit = self._cell_cache.get(e.id)
        if hit is not None and hit[0] == key and e.status != Status.RUNNING:
            return hit[1]
        cells = self._cells(e, now)
        self._cell_cache[e.id] = (key, cells)
        return cells

    def _set_columns(self, table: DataTable) -> tuple[tuple[str, str], ...]:
        """All columns; the factors (tags) column only while some experiment has factors (a sweep
        with --sweep) or tags, so a plain ratio sweep keeps the width it had."""
        with_factors = any(e.factors for e in self._experiments)
        with_tags = any(e.tags for e in self._experiments)
        columns = tuple(c for c in COLUMNS
                        if (with_factors or c[0] != "factors") and (with_tags or c[0] != "tags"))
        if columns != self._columns:
            table.clear(columns=True)
            for key, label in columns:
                table.add_column(label, key=key)
            self._columns, self._order = columns, []
        return columns

    def refresh_table(self) -> None:
        """Update changed cells in place; rebuild only when the set or order of rows changed."""
        table = self.query_one("#queue", DataTable)
        columns = self._set_columns(table)
        keep = [i for i, c in enumerate(COLUMNS) if c in columns]
        now = routes(self).clock()
        shown = self.visible_experiments()
        order = [e.id for e in shown]
        cells = {e.id: self._cached_cells(e, now) for e in shown}
        if order != self._order:
            selected = self.selected_id()
            table.clear()
            for i in order:
                table.add_row(*(cells[i][j] for j in keep), key=str(i))
            if selected in order:
                table.move_cursor(row=order.index(selected), animate=False)
        else:
            for i in order:
                old = self._rows.get(i)
                if old is cells[i]:      # unchanged row, straight from the cache
                    continue
                for (key, label), new, prev in zip(COLUMNS, cells[i],
                                                   old or (None,) * len(COLUMNS)):
                    if new != prev and (key, label) in columns:
                        # update_width: a column sized at the first paint for `-` must widen for
                        # `took 3m05s` and `██████████ 100%`, or the cell is cut to `too`.
                        table.update_cell(str(i), key, new, update_width=True)
        self._order, self._rows = order, cells
        empty = self.query_one("#queue-empty", Label)
        empty.display = not order
        if not self._experiments:
            empty.update("No experiments yet. Press n to queue one, or run: optical queue add "
                         "--ratio 1:1")
        else:
            empty.update("No experiment matches the search or filter (escape clears the search, f "
                         "cycles).")

    # ----------------------------------------------------------------- selection

    def selected_id(self) -> int | None:
        table = self.query_one("#queue", DataTable)
        if not table.row_count:
            return None
        try:
            row_key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        except CellDoesNotExist:
            return None
        return int(row_key.value) if row_key.value is not None else None

    def selected(self) -> Experiment | None:
        i = self.selected_id()
        return next((e for e in self._experiments if e.id == i), None)

    def _with_selected(self, fn: Callable[[Experiment], None]) -> None:
        e = self.selected()
        if e is None:
            self.notify("No experiment selected.", severity="warning")
            return
        fn(e)

    # ----------------------------------------------------------------- actions

    @on(DataTable.RowSelected, "#queue")
    def _row_selected(self, _event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        self._with_selected(lambda e: routes(self).open_experiment(e.id))

    def action_study(self) -> None:
        self._with_selected(lambda e: routes(self).open_study(e.name))

    def action_mark(self) -> None:
        def toggle(e: Experiment) -> None:
            self.marked ^= {e.id}  # repaints the row and the view label (watch_marked)
            table = self.query_one("#queue", DataTable)
            if table.cursor_row < table.row_count - 1:  # on to the next row, as file managers do
                table.move_cursor(row=table.cursor_row + 1)

        self._with_selected(toggle)

    def action_compare(self) -> None:
        present = {e.id for e in self._experiments}
        self.marked &= present   # a deleted run drops out
        if len(self.marked) < 2:
            self.notify("Mark two or more experiments with space, then press v to compare them.",
                        severity="warning")
            return
        routes(self).open_compare(sorted(self.marked))

    def action_new(self) -> None:
        routes(self).open_new_experiment()

    def action_cancel(self) -> None:
        self._with_selected(lambda e: confirmed_writes.cancel(self.app, e))

    def action_retry(self) -> None:
        self._with_selected(lambda e: confirmed_writes.retry(self.app, e))

    def action_clone(self) -> None:
        self._with_selected(lambda e: confirmed_writes.clone(self.app, e))

    def action_delete(self) -> None:
        self._with_selected(lambda e: confirmed_writes.delete(self.app, e))

    def action_sort(self, by: str | None = None) -> None:
        keys = list(SORTS)
        self.sort = by if by in SORTS else keys[(keys.index(self.sort) + 1) % len(keys)]

    def action_filter(self, status: str | None = "") -> None:
        if status == "":
            status = FILTERS[(FILTERS.index(self.status_filter) + 1) % len(FILTERS)]
        self.status_filter = Status(status) if status in set(Status) else None

    def action_search(self) -> None:
        self.query_one("#search", Input).focus()

    def action_clear_search(self) -> None:
        search = self.query_one("#search", Input)
        search.value = ""
        self.query_one("#queue", DataTable).focus()

    @on(Input.Changed, "#search")
    def _search_changed(self, event: Input.Changed) -> None:
        self.search = event.value.strip()

    @on(Input.Submitted, "#search")
    def _search_submitted(self, _event: Input.Submitted) -> None:
        self.query_one("#queue", DataTable).focus()

    def _view_text(self) -> Text:
        label = Text.assemble(("status ", "dim"), self.status_filter or "all", ("  sort ", "dim"),
                              self.sort)
        if self.marked:
            label.append_text(Text.assemble(("  marked ", "dim"), str(len(self.marked)),
                                            (" (v compares)", "dim")))
        return label

    def _show_view(self) -> None:
        self.query_one("#view-label", Label).update(self._view_text())
        self.refresh_table()

    # What each reactive repaints: the table follows the rows and every choice; the view label
    # names the sort, the filter and the marks.
    watch_sort = watch_status_filter = watch_marked = _show_view
    watch_search = refresh_table

    def experiments(self) -> Sequence[Experiment]:
        return self._experiments

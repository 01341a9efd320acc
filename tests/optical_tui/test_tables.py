"""`fill`: a DataTable filled whole paints its columns at their full widths from the first paint.

DataTable's own auto widths are measured when the table is next idle, and a line painted before
then stays cached at header-only widths (what made the compare snapshot flaky under load)."""

from __future__ import annotations

from rich.text import Text
from textual.app import App, ComposeResult
from textual.widgets import DataTable

from optical_tui.widgets.tables import fill
from tests.dashboard_support import synchronous


class OneTable(App[None]):
    CSS = "DataTable { width: 50; height: 5; }"  # a fixed size: no resize repaints the lines

    def compose(self) -> ComposeResult:
        yield DataTable(cursor_type="none")


@synchronous
async def test_a_paint_before_the_tables_idle_already_has_the_full_widths() -> None:
    app = OneTable()
    async with app.run_test(size=(60, 8)) as pilot:
        table = app.query_one(DataTable)
        await pilot.pause()
        fill(table, ["a", Text("b")], [(Text("a much longer cell"), Text("x"))], keys=["a", "b"])
        early = table.render_line(1).text  # what a screen update landing now would paint
        await pilot.pause()
        assert early.rstrip() == " a much longer cell  x"
        assert table.render_line(1).text == early
        assert [c.get_render_width(table) for c in table.columns.values()] == [20, 3]
        assert [str(k.value) for k in table.columns] == ["a", "b"]

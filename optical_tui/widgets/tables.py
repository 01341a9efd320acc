"""Filling a DataTable whole: columns and rows in one call, each column sized as it is added.

Why not DataTable's own auto widths: it measures new rows later, when the table is next idle,
and caches the lines it paints under a key that leaves the column widths out (textual 8.2; the
family of textual#1026). A paint that lands between the rows and that idle (more likely on a
loaded CPU) draws the columns as wide as their headers, and that cached paint stays until
something else moves the cursor or resizes the table. A width given with each column leaves no
such window: the first paint of the rows is the right one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.text import Text
from textual.render import measure
from textual.widgets import DataTable


def fill(table: DataTable, headers: Sequence[Text | str], rows: Iterable[Sequence[Text]],
         keys: Sequence[str] | None = None) -> None:
    """Replace the table's columns and rows; each column as wide as its widest cell or header,
    the width DataTable would measure itself once idle."""
    rows = [tuple(r) for r in rows]
    labels = [Text.from_markup(h) if isinstance(h, str) else h for h in headers]
    console = table.app.console
    table.clear(columns=True)
    for i, label in enumerate(labels):
        width = max(measure(console, cell, 1) for cell in (label, *(r[i] for r in rows)))
        table.add_column(label, width=width, key=keys[i] if keys else None)
    table.add_rows(rows)

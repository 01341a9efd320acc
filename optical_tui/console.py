"""Where the CLI writes: Rich consoles (never highlighting), plain JSON for scripts."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table

from engine.metric_keys import LangSettingTable

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def print_json(obj: Any) -> None:
    # Plain print, not Rich: scripts parse this, so no wrapping or markup.
    print(json.dumps(obj, indent=2, sort_keys=True, default=str))


def lang_setting_rich(table: LangSettingTable, title: str) -> Table:
    """The query-language × setting table (engine.metric_keys.lang_setting_table) for a terminal."""
    out = Table(title=title, title_justify="left")
    out.add_column("query lang")
    for col in table.columns:
        out.add_column(col, justify="right")
    previous = ""
    for row in table.rows:
        cells = ["–" if v is None else f"{v:.1f}" if "rank" in col else f"{v:.3f}"
                 for v, col in zip(row.values, table.columns, strict=True)]
        if row.unit.kind != "lang" and out.rows and previous == "lang":
            out.add_section()  # languages above, aggregates below
        previous = row.unit.kind
        style = "bold" if row.unit.kind == "macro" else "italic" if row.unit.kind == "group" else ""
        out.add_row(row.label, *cells, style=style)
    return out

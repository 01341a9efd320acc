"""Where the CLI writes: Rich consoles (never highlighting), plain JSON for scripts."""

from __future__ import annotations

import json
import os
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from engine.metric_keys import LangSettingTable

#: Width of output that reaches no terminal (a pipe from a script, a file, a CI log). Rich assumes
#: 80 columns there and cuts wide tables; with no screen to fit, nothing should be cut.
UNBOUNDED = 100_000


def terminal_width() -> int | None:
    """Columns of the terminal the user sees (COLUMNS, else that of stdout, stderr or stdin, as
    Rich looks for it); None when no terminal is attached."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    for fd in (1, 2, 0):
        try:
            return os.get_terminal_size(fd).columns
        except (OSError, ValueError):
            continue
    return None


# soft_wrap: a long path or URL stays one line (copy-paste), the terminal wraps it only visually.
# width None: Rich measures the terminal itself, at each print.
_WIDTH = None if terminal_width() else UNBOUNDED
console = Console(highlight=False, soft_wrap=True, width=_WIDTH)
err_console = Console(stderr=True, highlight=False, soft_wrap=True, width=_WIDTH)

# C0 controls (ESC, BEL, backspace, newline, …), DEL and C1 controls (a lone 0x9b is a CSI on
# some terminals), plus the Unicode line separators and bidirectional overrides that reorder or
# split what is shown: each becomes a visible escape such as \x1b, \n or \u202e.
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_UNSAFE = {*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029, *range(0x202A, 0x202F),
           *range(0x2066, 0x206A)}
_ESCAPES = {c: _NAMED.get(chr(c), f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}") for c in _UNSAFE}
_ESCAPES_KEEP_LINES = {c: e for c, e in _ESCAPES.items() if chr(c) != "\n"}


def safe(text: object, *, lines: bool = False) -> str:
    """A stored string as it may reach a terminal: every control character shown as a visible
    escape (ESC → \\x1b, newline → \\n), never sent raw. `lines=True` keeps newlines, for
    multi-line text (a traceback, a config). Rich markup is not interpreted by `Text` or
    `markup=False`; pass the result as `rich.text.Text`, never as a markup string."""
    return str(text).translate(_ESCAPES_KEEP_LINES if lines else _ESCAPES)


def safe_text(text: object, style: str = "", *, lines: bool = False) -> Text:
    """`safe(text)` as a Rich Text (no markup), for tables, labels and Text.assemble."""
    return Text(safe(text, lines=lines), style=style)


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

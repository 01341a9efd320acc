"""`?`: every key binding of every screen, generated from the bindings themselves."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

_KEY_NAMES = {
    "question_mark": "?", "slash": "/", "right_square_bracket": "]", "left_square_bracket": "[",
    "escape": "esc", "enter": "enter", "delete": "del", "ctrl+p": "ctrl+p", "ctrl+s": "ctrl+s",
}


def key_label(keys: str) -> str:
    return " / ".join(_KEY_NAMES.get(k.strip(), k.strip()) for k in keys.split(","))


def _bindings(bindings: Iterable[BindingType]) -> list[Binding]:
    out = []
    for b in bindings:
        if isinstance(b, Binding):
            out.append(b)
        else:
            key, action, *rest = b
            out.append(Binding(key, action, rest[0] if rest else action))
    return out


def help_table(sections: Sequence[tuple[str, Iterable[BindingType]]]) -> Table:
    table = Table(box=None, show_header=False, pad_edge=False, expand=True)
    table.add_column("key", style="bold cyan", no_wrap=True, min_width=14)
    table.add_column("action")
    for title, bindings in sections:
        table.add_row(Text(title, style="bold underline"), "")
        seen: set[str] = set()
        for b in _bindings(bindings):
            if b.key in seen:
                continue
            seen.add(b.key)
            table.add_row(key_label(b.key), b.tooltip or b.description or b.action)
        table.add_row("", "")
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,question_mark,q", "app.pop_screen",
                                                     "Close",
                tooltip="close this help")]

    def __init__(self, sections: Sequence[tuple[str, Iterable[BindingType]]]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box", classes="dialog"):
            yield Static(Text("Key bindings  (esc closes)", style="bold"))
            yield Static(help_table(self.sections), id="help-table")

"""Pick one item from a list in a modal (the study screen's cell to compare, its group-by key)."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option


class PickScreen(ModalScreen[str | None]):
    """Enter picks the highlighted item (its value is returned); escape returns None."""

    DEFAULT_CSS = """
    PickScreen { align: center middle; }
    #pick-list { height: auto; max-height: 20; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", tooltip="close without choosing"),
    ]

    def __init__(self, question: str, items: list[tuple[str, str]]) -> None:
        super().__init__()
        self.question = question
        self.items = items  # (label shown, value returned)

    def compose(self) -> ComposeResult:
        with Vertical(id="pick-box", classes="dialog"):
            yield Label(Text(self.question), id="pick-question")
            yield OptionList(
                *(Option(Text(label), id=str(i)) for i, (label, _) in enumerate(self.items)),
                id="pick-list",
            )

    def on_mount(self) -> None:
        self.query_one("#pick-list", OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.items[int(event.option.id or 0)][1])

    def action_cancel(self) -> None:
        self.dismiss(None)

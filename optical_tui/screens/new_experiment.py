"""The new-experiment form: ratios × sweep factors × seeds with a config file and overrides,
validated as you type.

Validation goes through `engine.sweep.new_experiments` (and `parse_sweep` for each factor line),
the same functions behind `optical queue add --sweep`, so the form accepts exactly what the CLI
accepts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static, TextArea

from engine.config import load_config, parse_ratio
from engine.errors import OpticalError
from engine.store import NewExperiment
from engine.sweep import level_text, new_experiments, parse_sweep
from optical_tui.console import safe

FIELDS = ("name", "ratios", "seeds", "config", "overrides", "sweeps", "priority")
#: Which field an error of `new_experiments` belongs under, by the option it names first.
_ERROR_FIELDS = (("--name", "name"), ("--seed", "seeds"), ("--priority", "priority"),
                 ("--sweep", "sweeps"), ("train.seed", "seeds"))


@dataclass
class FormResult:
    errors: dict[str, str] = field(default_factory=dict)
    specs: list[NewExperiment] = field(default_factory=list)


def _split(text: str) -> list[str]:
    return [p for p in re.split(r"[\s,]+", text.strip()) if p]


def _first_error(items: list[str], parse: Callable[[str], object]) -> str | None:
    """The first item `parse` rejects, as its message (one error per field)."""
    for item in items:
        try:
            parse(item)
        except OpticalError as exc:
            return str(exc)
    return None


def validate(values: dict[str, str]) -> FormResult:
    """Field errors (field -> one line), or the specs that would be queued."""
    out = FormResult()
    ratios = _split(values.get("ratios", ""))
    if not ratios:
        out.errors["ratios"] = "give at least one ratio, e.g. 1:0 1:1 0:1"
    if error := _first_error(ratios, parse_ratio):
        out.errors["ratios"] = error
    seeds: list[int] = []
    for s in _split(values.get("seeds", "")):
        try:
            seeds.append(int(s))
        except ValueError:
            out.errors["seeds"] = f"seed {s!r} is not an integer"
            break
    try:
        priority = int(values.get("priority", "").strip() or "0")
    except ValueError:
        out.errors["priority"] = "priority must be an integer (higher runs first)"
        priority = 0
    config_text = values.get("config", "").strip()
    config = Path(config_text).expanduser() if config_text else None
    overrides = [line.strip() for line in values.get("overrides", "").splitlines() if line.strip()]
    name = values.get("name", "").strip() or None
    # Config file first, then the overrides on top, so each error lands under its own field.
    try:
        load_config(config)
    except OpticalError as exc:
        out.errors["config"] = str(exc)
        config = None  # still check the overrides, against the defaults
    try:
        load_config(config, overrides)
    except OpticalError as exc:
        out.errors["overrides"] = str(exc)
    sweeps = [line.strip() for line in values.get("sweeps", "").splitlines() if line.strip()]
    if error := _first_error(sweeps, parse_sweep):
        out.errors["sweeps"] = error
    if out.errors:
        return out
    try:
        out.specs = new_experiments(ratios, seeds or [0], config, overrides, name, priority,
                                    sweeps=sweeps)
    except OpticalError as exc:
        text = str(exc)
        field_ = next((f for prefix, f in _ERROR_FIELDS if text.startswith(prefix)),
                      "sweeps" if sweeps else "ratios")
        out.errors[field_] = text
    return out


class NewExperimentScreen(ModalScreen[list[NewExperiment] | None]):
    DEFAULT_CSS = """
    #f-sweeps { height: 4; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss_form", "Close",
                tooltip="close the form without queueing"),
        Binding("ctrl+s", "submit", "Queue",
                tooltip="queue the experiments (also enter in a field)"),
    ]

    def __init__(self) -> None:
        super().__init__()
        # Errors show only for fields the user has edited (or all of them on submit).
        self.touched: set[str] = set()

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="new-form", classes="dialog"):
            yield Static(Text("New experiments — one per ratio × sweep factor values × seed",
                              style="bold"))
            for key, label, placeholder, value in (
                ("ratios", "ratios mono:cross", "e.g. 1:0 3:1 1:1 1:3 0:1", ""),
                ("seeds", "seeds", "e.g. 1 2 3 (default 0)", ""),
                ("config", "config file", "TOML, e.g. configs/smoke.toml (default: built-in)", ""),
                ("name", "sweep name", "default: the config file's name, else 'default'", ""),
                ("priority", "priority", "higher runs first", "0"),
            ):
                with Horizontal(classes="field"):
                    yield Label(label, classes="field-label")
                    yield Input(value=value, placeholder=placeholder, id=f"f-{key}", compact=True)
                yield Label("", id=f"err-{key}", classes="field-error")
            yield Label("overrides, one per line: section.key=value (e.g. train.steps=50)",
                        classes="field-label")
            yield TextArea(id="f-overrides", soft_wrap=False, show_line_numbers=False, compact=True)
            yield Label("", id="err-overrides", classes="field-error")
            yield Label("sweep factors, one per line: section.key=v1,v2 (e.g. ot.weight=0,1)",
                        classes="field-label")
            yield TextArea(id="f-sweeps", soft_wrap=False, show_line_numbers=False, compact=True)
            yield Label("", id="err-sweeps", classes="field-error")
            yield Static(id="form-summary")
            with Horizontal(classes="buttons"):
                yield Button("Queue (ctrl+s)", id="submit", variant="success", compact=True)
                yield Button("Close (esc)", id="close", compact=True)

    def on_mount(self) -> None:
        self.query_one("#f-ratios", Input).focus()
        self.check()

    def values(self) -> dict[str, str]:
        areas = ("overrides", "sweeps")
        out = {k: self.query_one(f"#f-{k}", Input).value for k in FIELDS if k not in areas}
        out.update({k: self.query_one(f"#f-{k}", TextArea).text for k in areas})
        return out

    def check(self) -> FormResult:
        result = validate(self.values())
        for key in FIELDS:
            label = self.query_one(f"#err-{key}", Label)
            # Text: messages hold [brackets], not markup.
            label.update(Text(result.errors.get(key, "")))
            label.display = key in result.errors and key in self.touched
        summary = self.query_one("#form-summary", Static)
        if result.specs:
            ratios = sorted({s.ratio for s in result.specs},
                            key=lambda r: -parse_ratio(r).mono_fraction)
            seeds = sorted({s.seed for s in result.specs})
            factors = {k: sorted({level_text(s.factors[k]) for s in result.specs})
                       for k in result.specs[0].factors}
            grid = "".join(f" × {k} {' '.join(v)}" for k, v in factors.items())
            summary.update(Text(f"will queue {len(result.specs)} experiment(s) in sweep "
                                f"{result.specs[0].name!r}: ratios {' '.join(ratios)}"
                                f"{safe(grid)} × seeds "
                                f"{' '.join(map(str, seeds))}", style="green"))
        else:
            shown = [k for k in result.errors if k in self.touched]
            summary.update(Text("fix the fields marked above" if shown else
                                "fill in at least the ratios", style="red" if shown else "dim"))
        self.query_one("#submit", Button).disabled = not result.specs
        return result

    @on(Input.Changed)
    @on(TextArea.Changed)
    def _changed(self, event: Input.Changed | TextArea.Changed) -> None:
        widget = event.input if isinstance(event, Input.Changed) else event.text_area
        if widget.id and self.is_mounted:
            self.touched.add(widget.id.removeprefix("f-"))
        self.check()

    @on(Input.Submitted)
    def _input_submitted(self, _event: Input.Submitted) -> None:
        self.action_submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "submit":
            self.action_submit()
        else:
            self.dismiss(None)

    def action_submit(self) -> None:
        self.touched.update(FIELDS)
        result = self.check()
        if result.specs:
            self.dismiss(result.specs)
        else:
            self.notify("The form has errors; nothing was queued.", severity="warning")

    def action_dismiss_form(self) -> None:
        self.dismiss(None)

"""Dashboard defects found in the user trial of issue 20 (item 7): each test failed before its
fix."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from engine.store import open_store
from engine.sweep import new_experiments
from optical_tui.app import OpticalApp
from optical_tui.screens.ratio_study import RatioStudyScreen
from tests.dashboard_support import (
    NOW,
    loaded,
    make_app,
    queue_table,
    seed_factorial_database,
    select,
    synchronous,
    wait_for,
)


def _width(table: DataTable, key: str) -> int:
    return next(c for k, c in table.columns.items() if k.value == key).get_render_width(table)


@synchronous
async def test_queue_cells_widen_when_a_run_finishes(tmp_path: Path) -> None:
    """A table first painted with `-` kept that width: a finished run showed `too` for its ETA."""
    db = tmp_path / "e.db"
    (spec,) = new_experiments(["1:1"], [0])
    with open_store(db, clock=lambda: NOW - 300) as store:
        (e,) = store.add_experiments([spec])
    app = make_app(db)
    async with app.run_test(size=(140, 30)) as pilot:
        await loaded(pilot)
        table = queue_table(app)
        assert str(table.get_cell(str(e.id), "eta")) == "-"
        with open_store(db, clock=lambda: NOW - 185) as store:
            run = store.claim_next("w", "cpu")
            assert run is not None and run.lease is not None
            store.flush(run.lease, [], step=200, total=200)
        with open_store(db, clock=lambda: NOW) as store:
            store.finish(run.lease, "done")
        await wait_for(pilot, lambda: str(table.get_cell(str(e.id), "status")).endswith("done"))
        await pilot.pause()
        eta, progress = table.get_cell(str(e.id), "eta"), table.get_cell(str(e.id), "progress")
        assert str(eta) == "took 3m05s" and str(progress).endswith("100%")
        padding = 2 * table.cell_padding
        assert _width(table, "eta") - padding >= Text(str(eta)).cell_len
        assert _width(table, "progress") - padding >= Text(str(progress)).cell_len


def screen_text(app: OpticalApp) -> str:
    """What the terminal shows, line by line."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


@synchronous
async def test_study_screen_is_readable_and_scrollable_at_80x24(tmp_path: Path) -> None:
    """At 80×24 the study showed one table row, PageDown did nothing, and the footer lost its
    keys."""
    db = tmp_path / "experiments.db"
    ids = seed_factorial_database(db)
    app = make_app(db)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        await select(pilot, ids["clone"])
        await pilot.press("t")
        await wait_for(
            pilot, lambda: isinstance(app.screen, RatioStudyScreen) and app.screen.loaded
        )
        # The footer and the table fill in over a few refreshes (slow on a loaded machine).
        await wait_for(
            pilot,
            lambda: "? Help" in screen_text(app).splitlines()[-1] and "macro" in screen_text(app),
            timeout=60,
        )
        await pilot.pause()
        text = screen_text(app)
        table = app.screen.query_one("#study-table", DataTable)
        shown = [
            line for line in text.splitlines() if re.match(r" [01] +(batch|within) +\d:\d ", line)
        ]
        assert len(shown) >= 4, text  # rows to read, not just the header
        footer = text.splitlines()[-1]
        assert "? Help" in footer and "q Quit" in footer and "esc Back" in footer, footer
        assert "macro weight=0 mixing=batch" in text  # the plot keeps its legend
        before = table.scroll_y
        await pilot.press("pagedown")
        await pilot.pause()
        assert table.scroll_y > before
        assert [
            line
            for line in screen_text(app).splitlines()
            if re.match(r" [01] +(batch|within)", line)
        ] != shown


@synchronous
async def test_study_of_an_all_cancelled_sweep_claims_no_benchmark(tmp_path: Path) -> None:
    db = tmp_path / "experiments.db"
    with open_store(db) as store:
        added = store.add_experiments(new_experiments(["1:1", "1:0"], [1], name="cx"))
        store.request_cancel([e.id for e in added])
    app = make_app(db)
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot)
        await select(pilot, added[0].id)
        await pilot.press("t")
        await wait_for(
            pilot, lambda: isinstance(app.screen, RatioStudyScreen) and app.screen.loaded
        )
        await pilot.pause()
        summary = str(app.screen.query_one("#study-summary").render())
        assert "benchmark" not in summary and "scored on nothing yet" in summary, summary
        legend = str(app.screen.query_one("#study-legend").render())
        assert "zero-shot (not in data.train_langs): ar, hi, vi " in legend, legend


@synchronous
async def test_the_form_says_when_it_repeats_experiments_the_sweep_has(tmp_path: Path) -> None:
    from optical_tui import confirmed_writes

    db = tmp_path / "experiments.db"
    specs = new_experiments(["1:1"], [1, 2], name="again")
    with open_store(db) as store:
        store.add_experiments(specs[:1])
    app = make_app(db)
    said: list[str] = []  # every notification, kept: a toast expires after seconds
    shown = app.notify

    def record(message: str, *args: Any, **kwargs: Any) -> None:
        said.append(str(message))
        shown(message, *args, **kwargs)

    app.notify = record  # type: ignore[method-assign]
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot)
        confirmed_writes.add(app, specs)
        await wait_for(pilot, lambda: said, timeout=60)
        (note,) = said
        assert note.startswith("queued 2 experiment(s): #2, #3 (note: repeats 1 experiment(s)")
        assert note.endswith("the sweep already has: #1)")

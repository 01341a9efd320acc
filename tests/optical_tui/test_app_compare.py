"""Pilot tests of comparing runs in the dashboard (mark in the queue, or every run of a study
cell), the study's group-by, and tags and notes in the queue (shown, searchable)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input

from engine.store import open_store
from optical_tui.screens.compare import CompareScreen
from optical_tui.screens.pick import PickScreen
from optical_tui.screens.queue import QueueScreen
from optical_tui.screens.ratio_study import RatioStudyScreen
from optical_tui.widgets.curves import CurvePlot
from tests.dashboard_support import (
    SIZE,
    column,
    loaded,
    make_app,
    open_study,
    queue_table,
    select,
    synchronous,
    wait_for,
)


def first_column(table: DataTable) -> list[str]:
    return [str(table.get_row_at(i)[0]) for i in range(table.row_count)]


@synchronous
async def test_marked_runs_open_overlaid_with_their_config_diff(db: Path) -> None:
    app = make_app(db)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("v")  # nothing marked: a warning, no screen
        assert isinstance(app.screen, QueueScreen)
        await select(pilot, 1)
        await pilot.press("space")  # marks #1 and moves on to #2
        await pilot.press("space")
        assert app.screen.marked == {1, 2}
        assert "marked 2 (v compares)" in str(app.screen.query_one("#view-label").render())
        assert column(queue_table(app), "id")[:3] == ["● 1", "● 2", "3"]
        await pilot.press("v")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.loaded)
        screen = app.screen
        plot = screen.query_one("#compare-plot", CurvePlot)
        assert [s.label for s in plot.series] == ["#1 1:0 s1", "#2 1:0 s2"]
        assert all(len(s.x) == 5 for s in plot.series)  # steps 0, 50, …, 200
        assert plot.series[0].y != plot.series[1].y
        diff = screen.query_one("#compare-diff", DataTable)
        assert first_column(diff) == ["train.seed"]
        final = screen.query_one("#compare-final", DataTable)
        assert "Mul mAP macro" in first_column(final) and "ar*" in first_column(final)
        assert screen.comparison is not None and screen.comparison.source == "full"
        macro_before = list(plot.series[0].y)
        await pilot.press("g")  # macro -> the high group
        assert "high group" in str(screen.query_one("#compare-controls").render())
        assert list(plot.series[0].y) != macro_before
        await pilot.press("escape")
        assert isinstance(app.screen, QueueScreen)


@synchronous
async def test_a_study_cell_opens_every_run_behind_it(
    db: Path, seeded: tuple[Path, dict[str, int]]
) -> None:
    ids = seeded[1]
    app = make_app(db)
    async with app.run_test(size=SIZE) as pilot:
        await open_study(pilot, ids["done"])
        await pilot.press("o")
        await wait_for(pilot, lambda: isinstance(app.screen, PickScreen))
        labels = [label for label, _ in app.screen.items]
        assert labels[0].startswith("1:0: 2 runs")
        # 1:1 has two counted seeds and the cancelled third: all three are behind the cell.
        assert any(
            label.startswith("1:1: 3 runs") and f"#{ids['cancelled']}" in label for label in labels
        )
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.loaded)
        assert [e.id for e in app.screen.runs] == [1, 2]
        await pilot.press("escape")
        assert isinstance(app.screen, RatioStudyScreen)


@synchronous
async def test_the_study_groups_by_any_key(db: Path, seeded: tuple[Path, dict[str, int]]) -> None:
    app = make_app(db)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_study(pilot, seeded[1]["done"])
        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(app.screen, PickScreen))
        assert [v for _, v in app.screen.items][:4] == ["", "ratio", "seed", "name"]
        await pilot.press("down", "down", "enter")  # "seed"
        await wait_for(pilot, lambda: app.screen is screen and screen.group_by == "seed")
        table = screen.query_one("#study-table", DataTable)
        assert [str(c.label) for c in table.columns.values()] == [
            "seed",
            "n",
            "high",
            "low",
            "macro",
        ]
        assert first_column(table) == ["1", "2"]
        assert [str(table.get_row_at(i)[1]) for i in range(2)] == [
            "4",
            "4",
        ]  # 4 counted ratios per seed
        assert "by seed" in str(screen.query_one("#study-view").render())
        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(app.screen, PickScreen))
        await pilot.press("enter")  # "(none)": back to the study's own tables
        await wait_for(pilot, lambda: app.screen is screen and screen.group_by is None)
        assert [str(c.label) for c in table.columns.values()] == [
            "ratio",
            "n",
            "high",
            "low",
            "macro",
        ]


@synchronous
async def test_tags_and_notes_show_in_the_queue_and_are_searchable(db: Path) -> None:
    app = make_app(db)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        assert "tags" not in [c.key.value for c in queue_table(app).columns.values()]
        with open_store(db) as store:
            store.retag([3, 4], add=("paper",))
            store.annotate(5, "diverged; lr too high")
        await wait_for(
            pilot, lambda: "tags" in [c.key.value for c in queue_table(app).columns.values()]
        )
        await wait_for(pilot, lambda: column(queue_table(app), "tags")[2:4] == ["paper", "paper"])
        search = app.screen.query_one("#search", Input)
        search.value = "paper"
        await wait_for(pilot, lambda: column(queue_table(app), "id") == ["3", "4"])
        search.value = "lr too high"
        await wait_for(pilot, lambda: column(queue_table(app), "id") == ["5"])


def test_compare_screen_snapshot(
    snap_compare,
    seeded: tuple[Path, dict[str, int]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the user sees: three marked runs of two ratios, curves overlaid beside the diff."""
    shutil.copy(seeded[0], tmp_path / "experiments.db")
    monkeypatch.chdir(tmp_path)  # a relative path: the header shows it

    async def run_before(pilot: Pilot) -> None:
        await loaded(pilot)
        for exp_id in (1, 2, 5):
            await select(pilot, exp_id)
            await pilot.press("space")
        await pilot.press("v")
        await wait_for(
            pilot, lambda: isinstance(pilot.app.screen, CompareScreen) and pilot.app.screen.loaded
        )
        await pilot.pause()

    assert snap_compare(make_app(Path("experiments.db")), terminal_size=SIZE, run_before=run_before)

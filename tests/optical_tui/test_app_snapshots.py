"""Snapshot tests of the main screens on the seeded database (fixed timestamps, injected clock).

Update after an intended visual change with: pytest tests/test_app_snapshots.py --snapshot-update
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.pilot import Pilot

from optical_tui.screens.experiment import ExperimentScreen
from optical_tui.screens.new_experiment import NewExperimentScreen
from optical_tui.screens.ratio_study import RatioStudyScreen
from tests.dashboard_support import (
    loaded,
    make_app,
    seed_database,
    seed_factorial_database,
    select,
    wait_for,
)

SIZE = (120, 40)


@pytest.fixture(scope="module", autouse=True)
def utc() -> Iterator[None]:
    """Event times are shown in local time: pin the zone for these snapshots, then restore it, so
    no later test runs in a zone it did not ask for."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    path = tmp_path_factory.mktemp("snap") / "seed.db"
    return path, seed_database(path)


@pytest.fixture
def db(seeded: tuple[Path, dict[str, int]], tmp_path: Path,
       monkeypatch: pytest.MonkeyPatch) -> Path:
    """A relative path, so the header (which shows it) is the same on every run."""
    shutil.copy(seeded[0], tmp_path / "experiments.db")
    monkeypatch.chdir(tmp_path)
    return Path("experiments.db")


def test_queue_screen(snap_compare, db: Path) -> None:
    assert snap_compare(make_app(db), terminal_size=SIZE, run_before=loaded)


def _open(exp_id: int, *keys: str):
    async def run_before(pilot: Pilot) -> None:
        await loaded(pilot)
        await select(pilot, exp_id)
        await pilot.press("enter")
        await wait_for(pilot,
                       lambda: isinstance(pilot.app.screen, ExperimentScreen)
                       and pilot.app.screen.loaded)
        await pilot.press(*keys)
        await pilot.pause()
    return run_before


def test_experiment_curves(snap_compare, db: Path, seeded: tuple[Path, dict[str, int]]) -> None:
    assert snap_compare(make_app(db), terminal_size=SIZE, run_before=_open(seeded[1]["done"]))


def test_experiment_groups_mo(snap_compare, db: Path, seeded: tuple[Path, dict[str, int]]) -> None:
    assert snap_compare(make_app(db), terminal_size=SIZE,
                        run_before=_open(seeded[1]["running"], "1", "g"))


def test_experiment_evaluation_table(snap_compare, db: Path,
                                     seeded: tuple[Path, dict[str, int]]) -> None:
    keys = ("right_square_bracket", "right_square_bracket")
    assert snap_compare(make_app(db), terminal_size=SIZE,
                        run_before=_open(seeded[1]["done"], *keys))


def test_ratio_study(snap_compare, db: Path, seeded: tuple[Path, dict[str, int]]) -> None:
    async def run_before(pilot: Pilot) -> None:
        await loaded(pilot)
        await select(pilot, seeded[1]["done"])
        await pilot.press("t")
        await wait_for(pilot,
                       lambda: isinstance(pilot.app.screen, RatioStudyScreen)
                       and pilot.app.screen.loaded)
    assert snap_compare(make_app(db), terminal_size=SIZE, run_before=run_before)


def test_new_experiment_form_with_an_error(snap_compare, db: Path) -> None:
    async def run_before(pilot: Pilot) -> None:
        await loaded(pilot)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, NewExperimentScreen))
        await pilot.press(*"1:1 0:0", "tab", *"1 2")
        await pilot.pause()
    assert snap_compare(make_app(db), terminal_size=SIZE, run_before=run_before)


def test_factorial_study(snap_compare, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A two-factor sweep: one line per level combination, factor columns, runs not counted
    listed."""
    monkeypatch.chdir(tmp_path)
    ids = seed_factorial_database(Path("experiments.db"))

    async def run_before(pilot: Pilot) -> None:
        await loaded(pilot)
        await select(pilot, ids["clone"])
        await pilot.press("t")
        await wait_for(pilot,
                       lambda: isinstance(pilot.app.screen, RatioStudyScreen)
                       and pilot.app.screen.loaded)
    assert snap_compare(make_app(Path("experiments.db")), terminal_size=SIZE, run_before=run_before)

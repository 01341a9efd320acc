"""Snapshot tests of the main screens on the seeded database (fixed timestamps, injected clock).

Update after an intended visual change with: pytest tests/test_app_snapshots.py --snapshot-update
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.pilot import Pilot

from tests.dashboard_support import (
    SIZE,
    loaded,
    make_app,
    open_experiment,
    open_form,
    open_study,
    seed_factorial_database,
)


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


@pytest.fixture
def db(db: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The private copy (tests/conftest.py) as a relative path, so the header (which shows it) is
    the same on every run."""
    monkeypatch.chdir(db.parent)
    return Path(db.name)


def test_queue_screen(snap_compare, db: Path) -> None:
    assert snap_compare(make_app(db), terminal_size=SIZE, run_before=loaded)


def _open(exp_id: int, *keys: str):
    async def run_before(pilot: Pilot) -> None:
        await open_experiment(pilot, exp_id)
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
        await open_study(pilot, seeded[1]["done"])
    assert snap_compare(make_app(db), terminal_size=SIZE, run_before=run_before)


def test_new_experiment_form_with_an_error(snap_compare, db: Path) -> None:
    async def run_before(pilot: Pilot) -> None:
        await open_form(pilot)
        await pilot.press(*"1:1 0:0", "tab", *"1 2")
        await pilot.pause()
    assert snap_compare(make_app(db), terminal_size=SIZE, run_before=run_before)


def test_factorial_study(snap_compare, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A two-factor sweep: one line per level combination, factor columns, runs not counted
    listed."""
    monkeypatch.chdir(tmp_path)
    ids = seed_factorial_database(Path("experiments.db"))

    async def run_before(pilot: Pilot) -> None:
        await open_study(pilot, ids["clone"])
    assert snap_compare(make_app(Path("experiments.db")), terminal_size=SIZE, run_before=run_before)

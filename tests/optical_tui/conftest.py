"""Dashboard fixtures shared by the screen tests: one seeded database per module, a private
copy per test (actions write to it)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.dashboard_support import seed_database


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    path = tmp_path_factory.mktemp("seed") / "seed.db"
    return path, seed_database(path)


@pytest.fixture
def db(seeded: tuple[Path, dict[str, int]], tmp_path: Path) -> Path:
    """A private copy per test: actions write to it."""
    copy = tmp_path / "experiments.db"
    shutil.copy(seeded[0], copy)
    return copy

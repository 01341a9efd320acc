"""Dashboard fixtures shared by the screen tests: one seeded database per module (tests/conftest.py
gives each test a private copy of it as `db`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.dashboard_support import seed_database


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    path = tmp_path_factory.mktemp("seed") / "seed.db"
    return path, seed_database(path)

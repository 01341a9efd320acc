"""The seeded dashboard database (tests/dashboard_support.py) holds what its docstring promises."""

from __future__ import annotations

from pathlib import Path

from engine.store import open_store
from tests.dashboard_support import seed_database


def test_seed_database(tmp_path: Path) -> None:
    ids = seed_database(tmp_path / "seed.db")
    with open_store(tmp_path / "seed.db") as store:
        statuses = {e.id: e.status for e in store.list_experiments()}
        assert statuses[ids["running"]] == "running" and statuses[ids["failed"]] == "failed"
        assert statuses[ids["cancelled"]] == "cancelled" and statuses[ids["queued"]] == "queued"
        assert sum(s == "done" for s in statuses.values()) == 8
        assert store.latest_metric("full/macro/mul/map")

"""Each database gets its own default runs folder (issue 20, item 7: two databases in one folder
shared `runs/`, so the first run of the second one failed on the first one's folder #1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.run_dirs import claim_run_dir, runs_root
from engine.store import open_store
from engine.sweep import new_experiments


def test_two_databases_in_one_folder_keep_their_runs_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPTICAL_RUNS", raising=False)
    roots = []
    for name in ("first.db", "second.db"):
        db = str(tmp_path / name)
        with open_store(db) as store:
            (e,) = store.add_experiments(new_experiments(["1:1"], [0], name=name))
        assert e.id == 1  # the same id in both databases
        root = runs_root(db)
        assert claim_run_dir(root, e) == root / "1"  # raised ConfigError for the second one
        roots.append(root)
    assert roots == [tmp_path / "first.runs", tmp_path / "second.runs"]
    assert runs_root(f"sqlite:///{tmp_path / 'first.db'}") == roots[0]


def test_runs_dir_and_optical_runs_still_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = str(tmp_path / "e.db")
    monkeypatch.setenv("OPTICAL_RUNS", str(tmp_path / "shared"))
    assert runs_root(db) == tmp_path / "shared"
    assert runs_root(db, tmp_path / "mine") == tmp_path / "mine"
    monkeypatch.delenv("OPTICAL_RUNS")
    monkeypatch.chdir(tmp_path)
    assert runs_root("postgresql://u@h/db") == tmp_path / "runs"  # a server: the current folder

"""The study of a sweep with no done run (issue 20, item 7: an all-cancelled sweep said "whole
benchmark" and marked all 7 languages zero-shot)."""

from __future__ import annotations

from pathlib import Path

from engine.store import open_store
from engine.study.core import compute_study, sweep_selection
from engine.study.formats import caption
from engine.sweep import new_experiments


def test_an_all_cancelled_sweep_keeps_its_zero_shot_languages(tmp_path: Path) -> None:
    specs = new_experiments(["1:1", "1:0"], [1, 2], overrides=["data.train_langs=en,de,es,zh,ar"], name="cx")
    with open_store(tmp_path / "e.db") as store:
        added = store.add_experiments(specs)
        store.request_cancel([e.id for e in added])
        exps = store.list_experiments(name="cx")
    assert {e.status for e in exps} == {"cancelled"}
    study = compute_study(exps, {}, selection=sweep_selection("cx"))
    assert not study.runs and len(study.excluded) == 4
    assert study.zero_shot == ("hi", "vi")       # from what the runs were to train on, not "all 7"
    assert "scored on nothing yet" in caption(study)[0]
    empty = compute_study([], {}, selection=sweep_selection("none"))
    assert empty.zero_shot == ("ar", "hi", "vi")  # the defaults' training languages

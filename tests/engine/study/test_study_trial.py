"""The study of a sweep with no done run (issue 20, item 7: an all-cancelled sweep said "whole
benchmark" and marked all 7 languages zero-shot)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.store import open_store
from engine.study.core import build_report, compute_study, sweep_selection
from engine.study.formats import caption
from engine.sweep import new_experiments
from tests.dashboard_support import seed_database


def test_an_all_cancelled_sweep_keeps_its_zero_shot_languages(tmp_path: Path) -> None:
    specs = new_experiments(
        ["1:1", "1:0"], [1, 2], overrides=["data.train_langs=en,de,es,zh,ar"], name="cx"
    )
    with open_store(tmp_path / "e.db") as store:
        added = store.add_experiments(specs)
        store.request_cancel([e.id for e in added])
        exps = store.list_experiments(name="cx")
    assert {e.status for e in exps} == {"cancelled"}
    study = compute_study(exps, {}, selection=sweep_selection("cx"))
    assert not study.runs and len(study.excluded) == 4
    assert study.zero_shot == ("hi", "vi")  # from what the runs were to train on, not "all 7"
    assert "scored on nothing yet" in caption(study)[0]
    empty = compute_study([], {}, selection=sweep_selection("none"))
    assert empty.zero_shot == ("ar", "hi", "vi")  # the defaults' training languages


@pytest.mark.parametrize("setting", ["mo", "mul"])
def test_a_single_panel_plot_keeps_its_whole_title(tmp_path: Path, setting: str) -> None:
    """The one-line suptitle was wider than a single panel's figure and lost both its ends."""
    from matplotlib.image import imread

    from engine.study.plot import save_plot

    db = tmp_path / "e.db"
    seed_database(db)
    with open_store(db) as store:
        report = build_report(store, sweep="ratio-sweep", setting=setting)
    pixels = imread(save_plot(report, tmp_path / "study.png"))
    top = pixels[: pixels.shape[0] // 8]  # the title band
    edges = np.concatenate([top[:, :3], top[:, -3:]], axis=1)[..., :3]
    assert (edges > 0.98).all(), "ink at the figure's left or right edge: the title is cut"
    assert (top[..., :3] < 0.5).any()  # and a title is there

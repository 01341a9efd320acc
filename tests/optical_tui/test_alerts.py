"""The dashboard's toast and terminal bell when a run fails or a sweep finishes
(optical_tui/alerts.py), driven by another writer committing to the store while the app is open."""

from __future__ import annotations

import time
from pathlib import Path

from textual.widgets._toast import Toast

from engine.config import load_config, with_run
from engine.metric_keys import PRIMARY_KEYS
from engine.statuses import Status
from engine.store import NewExperiment, open_store
from tests.dashboard_support import loaded, make_app, synchronous, wait_for

REPO = Path(__file__).resolve().parents[2]


def add(db: Path, name: str, seeds: tuple[int, ...]) -> list[int]:
    cfg = load_config(REPO / "configs" / "smoke.toml")
    specs = [NewExperiment(name, "1:1", s, with_run(cfg, "1:1", s).to_dict()) for s in seeds]
    with open_store(db) as store:
        return [e.id for e in store.add_experiments(specs)]


@synchronous
async def test_a_failed_run_and_a_finished_sweep_toast_and_ring_once(tmp_path: Path) -> None:
    db = tmp_path / "experiments.db"
    (old,) = add(db, "old", (0,))
    with open_store(db) as store:  # failed before the dashboard opened: never announced
        store.finish(store.claim_next("w", "cpu").lease, Status.FAILED, error="OldError: long ago")
    a, b = add(db, "sweep", (0, 1))
    app = make_app(db)
    rings: list[float] = []
    app.bell = lambda: rings.append(time.monotonic())  # type: ignore[method-assign]
    async with app.run_test(size=(140, 45), notifications=True) as pilot:
        await loaded(pilot)
        await pilot.pause(0.3)
        assert rings == [] and not app.query(Toast)
        with open_store(db) as store:
            lease = store.claim_next("w", "cpu").lease
            store.finish(lease, Status.FAILED, error="DataMissing: no data in /x\n\nTraceback ...")
        await wait_for(pilot, lambda: len(rings) == 1)
        with open_store(db) as store:
            lease = store.claim_next("w", "cpu").lease
            store.flush(lease, [(PRIMARY_KEYS[1], 5, 0.4321, time.time())], step=5, total=5)
            store.finish(lease, Status.DONE)
        await wait_for(pilot, lambda: len(rings) == 2)
        await pilot.pause(0.3)
        shown = [str(t.render()) for t in app.screen.query(Toast)]
        assert len(rings) == 2 and len(shown) == 2, shown
        assert f"run #{a} failed" in shown[0] and "DataMissing: no data in /x" in shown[0]
        assert "Traceback" not in shown[0] and f"#{old}" not in " ".join(shown)
        assert "sweep sweep finished" in shown[1] and "1 done, 1 failed" in shown[1]
        assert "Mul macro mAP 0.4321" in shown[1], shown[1]
    assert b not in (old, a)

"""The dashboard while another process writes: the curve on screen grows as points are committed.

The fast test uses a separate Python process writing through `Store.flush` exactly as a training
child does, on SQLite and on a real PostgreSQL (tests/pg_fixtures.py); the slow one runs a real
`optical worker` on configs/smoke.toml (tiny model, CPU). On PostgreSQL a point can commit after
points with higher ids: the late-commit test holds one back in an open transaction and checks it
still reaches the screen.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from textual.pilot import Pilot

from engine.config import Config, load_config, with_run
from engine.store import NewExperiment, open_store
from optical_tui.screens.experiment import ExperimentScreen
from optical_tui.widgets.curves import CurvePlot
from tests.dashboard_support import SIZE, make_app, synchronous, wait_for

REPO = Path(__file__).resolve().parents[2]

WRITER = r"""
import sys, time
from engine.store import open_store
db, exp_id, points = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open_store(db) as store:
    lease = store.claim_next("writer", "cpu").lease
    for step in range(points):
        rows = [(f"eval/mul/{lang}/map", step, 0.1 + 0.05 * step, time.time())
                for lang in ("ar", "de", "en", "es", "hi", "vi", "zh")]
        rows.append(("train/loss", step, 2.0 / (step + 1), time.time()))
        store.flush(lease, rows, step=step, total=points - 1)
        time.sleep(0.15)
    store.finish(lease, "done")
"""


def queue_one(db: Path | str, cfg: Config) -> int:
    with open_store(db) as store:
        (e,) = store.add_experiments([NewExperiment("live", "1:1", 0,
                                                    with_run(cfg, "1:1", 0).to_dict())])
    return e.id


async def open_first(pilot: Pilot) -> CurvePlot:
    await wait_for(pilot, lambda: getattr(pilot.app, "live", None) is not None)
    await pilot.press("enter")
    await wait_for(pilot,
                   lambda: isinstance(pilot.app.screen, ExperimentScreen)
                   and pilot.app.screen.loaded)
    return pilot.app.screen.query_one("#curve", CurvePlot)


async def watch_writer(pilot: Pilot, curve: CurvePlot, argv: list[str], want: int,
                       timeout: float, exit_timeout: float, **popen: Any) -> list[int]:
    """Start the writer process `argv` (in the repository) and return the lengths of the first
    curve as seen on screen until it holds `want` points; the writer must then exit cleanly."""
    proc = subprocess.Popen(argv, cwd=REPO, **popen)  # noqa: ASYNC220
    try:
        seen = [0]
        deadline = time.monotonic() + timeout
        while seen[-1] < want:
            if time.monotonic() > deadline:
                raise AssertionError(f"curve stopped at {seen[-1]} points; "
                                     f"writer exit {proc.poll()}")
            n = len(curve.series[0].x) if curve.series else 0
            if n != seen[-1]:
                seen.append(n)
            await pilot.pause(0.02)
    finally:
        proc.wait(timeout=exit_timeout)
    assert proc.returncode == 0
    return seen


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "experiments.db")
    return str(request.getfixturevalue("pg_url"))


def steps_on_screen(curve: CurvePlot) -> list[float]:
    return list(curve.series[0].x) if curve.series else []


@synchronous
async def test_curve_grows_while_a_writer_process_commits(db: str) -> None:
    exp_id = queue_one(db, Config())
    app = make_app(db)  # type: ignore[arg-type]  # a path or a URL, as --db takes it
    async with app.run_test(size=SIZE) as pilot:
        curve = await open_first(pilot)
        assert curve.series == ()
        seen = await watch_writer(pilot, curve, [sys.executable, "-c", WRITER, str(db),
                                                 str(exp_id), "8"], want=8, timeout=30,
                                  exit_timeout=30)
        # Several intermediate states: the screen followed the writer, not just the final result.
        assert len(seen) >= 4 and seen == sorted(seen)
        await wait_for(pilot, lambda: app.screen.experiment.status == "done")


@synchronous
async def test_a_point_that_commits_late_still_reaches_the_screen_on_postgres(pg_url: str) -> None:
    """Tx A writes step 0 and stays open; steps 1-3 commit (higher ids) and are drawn; A commits;
    step 0 appears. A dashboard reading "ids after the last one" would never draw it."""
    exp_id = queue_one(pg_url, Config())
    with open_store(pg_url) as store:
        lease = store.claim_next("writer", "cpu").lease
    assert lease is not None
    langs = ("ar", "de", "en", "es", "hi", "vi", "zh")

    def rows(step: int) -> list[tuple[str, int, float, float]]:
        return [(f"eval/mul/{lang}/map", step, 0.1 + 0.05 * step, time.time()) for lang in langs]

    app = make_app(pg_url)  # type: ignore[arg-type]  # a URL, as --db takes it
    async with app.run_test(size=SIZE) as pilot:
        curve = await open_first(pilot)
        with psycopg.connect(pg_url) as slow:     # not autocommit: the transaction stays open
            for key, step, value, at in rows(0):
                slow.execute("INSERT INTO metrics (experiment_id, key, step, value, time) VALUES "
                             "(%s, %s, %s, %s, %s)",
                             (exp_id, key, step, value, at))
            with open_store(pg_url) as store:
                for step in (1, 2, 3):
                    store.flush(lease, rows(step), step=step, total=3)
            await wait_for(pilot, lambda: steps_on_screen(curve) == [1.0, 2.0, 3.0])
            await pilot.pause(0.3)               # several polls pass while A is still open
            assert steps_on_screen(curve) == [1.0, 2.0, 3.0]
            slow.commit()
        await wait_for(pilot, lambda: steps_on_screen(curve) == [0.0, 1.0, 2.0, 3.0])


@pytest.mark.slow
@synchronous
async def test_curve_grows_while_a_real_worker_trains(tmp_path: Path) -> None:
    """A real `optical worker` (child process, tiny model, CPU) on configs/smoke.toml, 9 steps."""
    db = tmp_path / "experiments.db"
    cfg = load_config(REPO / "configs" / "smoke.toml", ["train.steps=9"])  # evals at 0, 3, 6, 9
    queue_one(db, cfg)
    app = make_app(db)
    async with app.run_test(size=SIZE) as pilot:
        curve = await open_first(pilot)
        env = dict(os.environ)
        seen = await watch_writer(pilot, curve, [str(Path(sys.executable).parent / "optical"),
                                                 "--db", str(db), "worker",
                                                 "--once", "--device", "cpu"],
                                  want=4, timeout=300, exit_timeout=120, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert len(seen) >= 3 and seen == sorted(seen)


@synchronous
async def test_the_status_bar_judges_workers_by_the_database_servers_clock(pg_url: str) -> None:
    """Heartbeats carry the PostgreSQL server's time: a dashboard on a box whose clock is an hour
    ahead must still call a worker that just spoke alive."""
    from optical_tui.app import OpticalApp

    with open_store(pg_url) as store:
        store.register_worker("gpu-box:7:cuda:0", "gpu-box", 7, "cuda:0")
    app = OpticalApp(pg_url, poll_interval=0.05, clock=lambda: time.time() + 3600)
    app.animation_level = "none"
    async with app.run_test(size=(120, 30)) as pilot:
        def bar() -> str:
            return str(app.screen.query_one("#status-bar").render())

        await wait_for(pilot, lambda: "workers" in bar())
        assert "workers 1 alive" in bar() and "silent" not in bar(), bar()

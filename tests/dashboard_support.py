"""What the dashboard tests share: a seeded database with fixed timestamps, and Pilot helpers.

Written only through the public Store API (claim, flush, finish, …) so the dashboard reads what a
real worker would leave behind. Values are a deterministic synthetic pattern (a fixture, not a
result): they differ by ratio, language and step so every curve and table cell is visible.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import math
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import DataTable

from engine.config import MLQA_LANGS, Config, with_run
from engine.metric_keys import (
    MACRO,
    SETTINGS,
    MetricName,
    Setting,
    group_unit,
    lang_unit,
    metric_key,
)
from engine.statuses import Status
from engine.store import NewExperiment, open_store
from optical_tui.app import OpticalApp
from optical_tui.screens.experiment import ExperimentScreen
from optical_tui.screens.new_experiment import NewExperimentScreen
from optical_tui.screens.queue import QueueScreen
from optical_tui.screens.ratio_study import RatioStudyScreen

T0 = 1_700_000_000.0          # fixed wall clock of the seeded world
NOW = T0 + 7_200.0            # the injected "now" of the app under test
RATIOS = ("1:0", "3:1", "1:1", "1:3", "0:1")
SEEDS = (1, 2)
STEPS = 200
EVAL_EVERY = 50
GROUPS = {"high": ("en", "de", "es", "vi", "zh"), "low": ("ar", "hi")}
SIZE = (120, 40)              # the terminal the screen tests and snapshots run in

ScreenT = TypeVar("ScreenT", bound=Screen)


class FixedClock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def value(ratio: str, seed: int, setting: str, lang: str, step: int, metric: str = "map") -> float:
    mono, cross = (float(x) for x in ratio.split(":"))
    alpha = mono / (mono + cross)
    base = {"mo": 0.62, "cr": 0.50,
            "mul": 0.40}[setting] + (0.03 if lang in GROUPS["high"] else -0.06)
    shape = 0.05 * (1 - (alpha - 0.5) ** 2 * 4) + (0.02 * alpha if setting == "mo" else 0.0)
    learned = (1 - math.exp(-step / 80)) * shape
    noise = 0.008 * math.sin(seed * 7 + MLQA_LANGS.index(lang) * 3 + step)
    scale = {"map": 1.0, "r@1": 0.8, "r@10": 1.3, "mrr@10": 0.95, "ndcg@10": 1.05}.get(metric, 1.0)
    return round(min(0.99, (base + learned + noise) * scale), 4)


def eval_points(prefix: str, ratio: str, seed: int, step: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for metric in ("map", "r@1"):
        for setting in SETTINGS:
            for lang in MLQA_LANGS:
                out[f"{prefix}/{setting}/{lang}/{metric}"] = value(ratio, seed, setting, lang, step,
                                                                   metric)
            for g, members in GROUPS.items():
                out[f"{prefix}/group/{g}/{setting}/{metric}"] = round(
                    sum(out[f"{prefix}/{setting}/{x}/{metric}"] for x in members) / len(members), 4)
            out[f"{prefix}/macro/{setting}/{metric}"] = round(
                sum(out[f"{prefix}/{setting}/{x}/{metric}"] for x in MLQA_LANGS) / len(MLQA_LANGS),
                4)
    for lang in MLQA_LANGS:
        out[f"{prefix}/mul/{lang}/rank_distance"] = round(300 - step * 0.3 - 40 * seed / 2, 1)
    out[f"{prefix}/macro/mul/rank_distance"] = round(290 - step * 0.3, 1)
    return out


def train_points(step: int) -> dict[str, float]:
    lr = 2e-5 * min(1.0, step / 20) * (1 - step / STEPS)
    return {"train/loss_task": round(2.5 * math.exp(-step / 60) + 0.4, 4),
            "train/loss_ot": round(0.8 * math.exp(-step / 90) + 0.1, 4),
            "train/loss": round(2.5 * math.exp(-step / 60) + 0.8 * math.exp(-step / 90) + 0.5, 4),
            "train/lr": lr}


def seed_database(path: Path, sweep: str = "ratio-sweep", t0: float = T0) -> dict[str, int]:
    """10 experiments (5 ratios × 2 seeds): done, one running, one failed, one queued, one
    cancelled.

    Returns `{"running": id, "failed": id, "queued": id, "cancelled": id, "done": id}`.
    """
    clock = FixedClock(t0)
    base = Config().replace(train={"steps": STEPS}, eval={"every": EVAL_EVERY})
    ids: dict[str, int] = {}
    with open_store(path, clock=clock) as store:
        specs = [NewExperiment(name=sweep, ratio=r, seed=s, priority=0,
                               config=with_run(base, r, s).to_dict(), code_version="abc123def456")
                 for r in RATIOS for s in SEEDS]
        specs.append(NewExperiment(name="lambda-0", ratio="1:1", seed=1, priority=0,
                                   config=with_run(base.replace(ot={"weight": 0.0}), "1:1",
                                                   1).to_dict()))
        exps = store.add_experiments(specs)
        store.register_worker("gpu0", "box", 4242, "cuda:0")
        plan = {e.id: "done" for e in exps}
        plan[exps[8].id] = "running"       # 0:1 seed 1
        plan[exps[9].id] = "failed"        # 0:1 seed 2
        plan[exps[10].id] = "queued"       # the lambda-0 sweep
        for e in exps:
            if plan[e.id] == "queued":
                ids["queued"] = e.id
                continue
            clock.t += 60
            claimed = store.claim_next("gpu0", "cuda:0")
            assert claimed is not None
            last = STEPS if plan[e.id] == "done" else 120 if plan[e.id] == "running" else 60
            for step in range(0, last + 1, 10):
                clock.t += 3
                rows = [(k, step, v, clock.t) for k, v in train_points(step).items()]
                if step % EVAL_EVERY == 0:
                    rows += [(k, step, v, clock.t)
                             for k, v in eval_points("eval", e.ratio, e.seed, step).items()]
                if plan[e.id] == "done" and step == STEPS:
                    rows += [(k, step, v, clock.t)
                             for k, v in eval_points("full", e.ratio, e.seed, step + 40).items()]
                store.flush(claimed.lease, rows, step=step, total=STEPS)
            if plan[e.id] == "failed":
                store.finish(claimed.lease, "failed", error=(
                    "Traceback (most recent call last):\n  File \"engine/train.py\", line 120, in "
                    "run_training\n"
                    "    loss.backward()\nRuntimeError: CUDA out of memory. Tried to allocate 2.00 "
                    "GiB"))
            elif plan[e.id] == "done":
                store.finish(claimed.lease, "done")
            ids[plan[e.id]] = e.id
        extra = store.add_experiments([NewExperiment(name=sweep, ratio="1:1", seed=3, priority=0,
                                                     config=with_run(base, "1:1", 3).to_dict())])
        store.request_cancel([extra[0].id])
        ids["cancelled"] = extra[0].id
        clock.t = t0 + (NOW - T0) - 5
        store.worker_heartbeat("gpu0", ids["running"], "running")
    return ids


FACTORIAL = "factorial"
FACTORIAL_RATIOS = ("1:0", "1:1", "0:1")
FACTORIAL_SWEEPS = ("ot.weight=0,1", "train.mixing=batch,within")
FACTORIAL_SEEDS = (1, 2, 3)


def factorial_value(ratio: str, weight: float, mixing: str, seed: int, setting: str, lang: str,
                    step: int, clone: bool = False) -> float:
    """Synthetic: OT helps low-resource languages more at cross-heavy ratios; within-batch mixing
    costs a little; seeds add noise; a clone's numbers differ slightly (so the one counted
    shows)."""
    mono, cross = (float(x) for x in ratio.split(":"))
    alpha = mono / (mono + cross)
    low = lang in GROUPS["low"]
    base = {"mo": 0.62, "cr": 0.50, "mul": 0.40}[setting] + (0.03 if not low else -0.06)
    effect = 0.04 * (1 - alpha) * weight * (2.0 if low else 1.0) - (0.01 if mixing == "within"
                                                                    else 0.0)
    noise = 0.006 * math.sin(seed * 5 + MLQA_LANGS.index(lang) * 3) + (0.004 if clone else 0.0)
    learned = (1 - math.exp(-step / 80)) * (0.05 + effect)
    return round(base + learned + noise, 4)


def factorial_points(prefix: str, ratio: str, factors: dict[str, Any], seed: int, step: int,
                     clone: bool = False) -> dict[str, float]:
    out: dict[str, float] = {}
    weight, mixing = float(factors["ot.weight"]), str(factors["train.mixing"])
    for setting in SETTINGS:
        for lang in MLQA_LANGS:
            out[metric_key(prefix, setting, lang_unit(lang), MetricName.MAP)] = factorial_value(
                ratio, weight, mixing, seed, setting, lang, step, clone)
        for g, members in GROUPS.items():
            out[metric_key(prefix, setting, group_unit(g), MetricName.MAP)] = round(sum(
                out[metric_key(prefix, setting, lang_unit(x), MetricName.MAP)]
                for x in members) / len(members), 4)
        out[metric_key(prefix, setting, MACRO, MetricName.MAP)] = round(sum(
            out[metric_key(prefix, setting, lang_unit(x), MetricName.MAP)]
            for x in MLQA_LANGS) / len(MLQA_LANGS), 4)
    for unit in (MACRO, *(group_unit(g) for g in GROUPS), *(lang_unit(x) for x in MLQA_LANGS)):
        out[metric_key(prefix, Setting.MUL, unit, MetricName.RANK_DISTANCE)] = round(
            300 - step * 0.3 - 20 * float(factors["ot.weight"]) - 5 * seed, 1)
    return out


def seed_factorial_database(path: Path, t0: float = T0) -> dict[str, int]:
    """A two-factor sweep queued through the real `new_experiments` grid (3 ratios × ot.weight 0,1 ×
    train.mixing batch,within × seeds 1-3 = 36 runs) with everything a study must handle:
    one run still running, one failed and retried (the retry done), one cancelled, one queued,
    one done run cloned (the clone done, with slightly different numbers: it supersedes the
    original) and cloned again (queued). Returns the ids of those special runs by role."""
    from engine.sweep import new_experiments

    clock = FixedClock(t0)
    specs = new_experiments(list(FACTORIAL_RATIOS), list(FACTORIAL_SEEDS), None,
                            [f"train.steps={STEPS}", f"eval.every={EVAL_EVERY}"], FACTORIAL,
                            sweeps=list(FACTORIAL_SWEEPS))
    roles = {"running": 7, "failed": 12, "cancelled": 20, "queued": 33}  # positions in the grid
    ids: dict[str, int] = {}
    with open_store(path, clock=clock) as store:
        # Priorities decide the claim order: every done run first, then the one left running.
        low = {roles["running"]: -1, roles["queued"]: -2}
        exps = store.add_experiments([dataclasses.replace(s, priority=low.get(i, 0))
                                      for i, s in enumerate(specs)])
        store.register_worker("gpu0", "box", 4242, "cuda:0")
        plan = {e.id: "done" for e in exps}
        for role, i in roles.items():
            plan[exps[i].id] = role
            ids[role] = exps[i].id
        ids["done"] = exps[0].id

        def run(e: Any, outcome: str, clone: bool = False) -> None:
            clock.t += 60
            claimed = store.claim_next("gpu0", "cuda:0")
            assert claimed is not None and claimed.id == e.id, (claimed, e.id)
            last = STEPS if outcome == "done" else 120 if outcome == "running" else 60
            for step in range(0, last + 1, EVAL_EVERY):
                clock.t += 3
                rows = [(k, step, v, clock.t) for k, v in train_points(step).items()]
                rows += [(k, step, v, clock.t)
                         for k, v in factorial_points("eval", e.ratio, e.factors, e.seed, step,
                                                      clone).items()]
                if outcome == "done" and step == STEPS:
                    rows += [(k, step, v, clock.t)
                             for k, v in factorial_points("full", e.ratio, e.factors, e.seed, step,
                                                          clone).items()]
                store.flush(claimed.lease, rows, step=step, total=STEPS)
            if outcome == "failed":
                store.finish(claimed.lease, Status.FAILED, error="RuntimeError: CUDA out of memory")
            elif outcome == "done":
                store.finish(claimed.lease, Status.DONE)

        for e in exps:
            if plan[e.id] == "cancelled":
                store.request_cancel([e.id])
            elif plan[e.id] not in ("queued", "running"):
                run(e, plan[e.id])
        (retry,) = store.retry([ids["failed"]])
        run(retry, "done")
        ids["retry"] = retry.id
        (clone,) = store.clone([ids["done"]])
        run(clone, "done", clone=True)
        ids["clone"] = clone.id
        run(next(e for e in exps if e.id == ids["running"]), "running")
        (again,) = store.clone([ids["done"]])
        ids["queued clone"] = again.id
        clock.t = t0 + (NOW - T0) - 5
        store.worker_heartbeat("gpu0", ids["running"], "running")
    return ids


def synchronous(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async Pilot test on a fresh event loop (no pytest async plugin needed)."""
    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))
    return run


def make_app(db: Path) -> OpticalApp:
    app = OpticalApp(str(db), poll_interval=0.05, clock=lambda: NOW)
    app.animation_level = "none"   # tab underlines would otherwise be caught mid-slide
    return app


@contextlib.asynccontextmanager
async def dashboard(db: Path) -> AsyncIterator[tuple[OpticalApp, Pilot]]:
    """A fresh app on `db` under a Pilot in the SIZE terminal, its queue loaded."""
    app = make_app(db)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        yield app, pilot


async def wait_for(pilot: Pilot, predicate: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await pilot.pause(0.02)


def queue_table(app: OpticalApp) -> DataTable:
    return app.screen.query_one("#queue", DataTable)


async def loaded(pilot: Pilot) -> None:
    await wait_for(pilot,
                   lambda: isinstance(pilot.app.screen, QueueScreen)
                   and queue_table(pilot.app).row_count)


def column(table: DataTable, key: str) -> list[str]:
    return [str(table.get_cell(row, key)) for row in table.rows]


async def select(pilot: Pilot, exp_id: int) -> None:
    table = queue_table(pilot.app)
    table.move_cursor(row=table.get_row_index(str(exp_id)))
    await pilot.pause()


async def open_screen(pilot: Pilot, key: str, kind: type[ScreenT], exp_id: int | None = None,
                      *, loads: bool = True) -> ScreenT:
    """From the loaded queue: select `exp_id` (when given), press `key`, and wait until a `kind`
    screen is on top and, where it `loads` data in the background, has read it."""
    await loaded(pilot)
    if exp_id is not None:
        await select(pilot, exp_id)
    await pilot.press(key)
    await wait_for(pilot,
                   lambda: isinstance(pilot.app.screen, kind)
                   and (not loads or pilot.app.screen.loaded))
    screen = pilot.app.screen
    assert isinstance(screen, kind)
    return screen


async def open_experiment(pilot: Pilot, exp_id: int) -> ExperimentScreen:
    return await open_screen(pilot, "enter", ExperimentScreen, exp_id)


async def open_study(pilot: Pilot, exp_id: int) -> RatioStudyScreen:
    """The study of `exp_id`'s sweep."""
    return await open_screen(pilot, "t", RatioStudyScreen, exp_id)


async def open_form(pilot: Pilot) -> NewExperimentScreen:
    form = await open_screen(pilot, "n", NewExperimentScreen, loads=False)
    # The form is on top before its on_mount focuses the first field: a key pressed in between
    # is lost (seen under load, as "1:1 2:x" typed as ":1 2:x").
    await wait_for(pilot, lambda: form.focused is not None)
    return form

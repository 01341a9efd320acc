"""The study core (engine.study.core.compute_study): which runs count, the value each contributes,
the cells, paired differences and factor interactions — on hand-built databases with clones,
retries, failed, cancelled, queued and running runs and two factors; and the dashboard's study
screen showing exactly the numbers `optical report` prints."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable
from typer.testing import CliRunner

from engine.config import Config, with_run
from engine.metric_keys import MACRO, MetricName, Setting, Split, group_unit, lang_unit, metric_key
from engine.statuses import Status
from engine.store import Experiment, NewExperiment, open_store
from engine.study.core import Exclusion, build_report, compute_study, describe, paired_difference
from engine.study.formats import render, tables, to_dict
from optical_tui.screens.ratio_study import RatioStudyScreen
from tests.dashboard_support import (
    FACTORIAL,
    STEPS,
    dashboard,
    factorial_points,
    open_study,
    seed_factorial_database,
    synchronous,
    wait_for,
)

FULL_MACRO = metric_key(Split.FULL, Setting.MUL, MACRO, MetricName.MAP)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """The factorial sweep; each test gets a private copy as `db` (tests/conftest.py)."""
    path = tmp_path_factory.mktemp("factorial") / "seed.db"
    return path, seed_factorial_database(path)


def macro(ratio: str, weight: float, mixing: str, seed: int, clone: bool = False) -> float:
    """What the seeded database holds for one run's full-benchmark Mul macro mAP."""
    return factorial_points(Split.FULL, ratio, {"ot.weight": weight, "train.mixing": mixing}, seed,
                            STEPS,
                            clone)[FULL_MACRO]


# --------------------------------------------------------------------------- the rules, on the
# store


def test_which_runs_count_and_why_the_others_do_not(db: Path,
                                                    seeded: tuple[Path, dict[str, int]]) -> None:
    ids = seeded[1]
    with open_store(db) as store:
        study = build_report(store, sweep=FACTORIAL)
        exps = {e.id: e for e in store.list_experiments()}
    assert study.factors == ("ot.weight", "train.mixing")
    assert study.levels == {"ot.weight": ("0", "1"), "train.mixing": ("batch", "within")}
    assert study.panels == (("0", "batch"), ("0", "within"), ("1", "batch"), ("1", "within"))
    assert study.ratios == ("1:0", "1:1", "0:1") and study.source == "full"
    reasons = {x.experiment_id: (x.status, x.reason, x.detail) for x in study.excluded}
    assert reasons == {
        # a clone of a done run
        ids["done"]: (Status.DONE, Exclusion.SUPERSEDED, f"by #{ids['clone']}"),
        # no provisional numbers
        ids["running"]: (Status.RUNNING, Exclusion.NOT_DONE, "step 100/200"),
        ids["failed"]: (Status.FAILED, Exclusion.NOT_DONE, f"retried as #{ids['retry']}"),
        ids["cancelled"]: (Status.CANCELLED, Exclusion.NOT_DONE, ""),
        ids["queued"]: (Status.QUEUED, Exclusion.NOT_DONE, ""),
        ids["queued clone"]: (Status.QUEUED, Exclusion.NOT_DONE, ""),
    }
    counted = {r.experiment_id for r in study.runs}
    assert len(counted) == 33 and ids["clone"] in counted and ids["retry"] in counted
    assert counted | set(reasons) == set(exps)  # every run is either counted or listed
    n = {(p, r): s.n for (p, r, u), s in study.summary.items() if u == MACRO}
    assert n[(("0", "batch"), "1:0")] == 3      # original + clone of seed 1 count once
    assert n[(("1", "batch"), "1:0")] == 2      # seed 2 is running
    assert n[(("0", "batch"), "1:1")] == 3      # the failed seed 1 counts through its retry
    assert n[(("1", "batch"), "1:1")] == 2      # seed 3 cancelled
    assert n[(("1", "within"), "0:1")] == 2     # seed 3 queued
    # The newest of two done runs of one cell and seed counts: the clone's (different) numbers.
    cell = study.summary[(("0", "batch"), "1:0", MACRO)]
    expected = [macro("1:0", 0, "batch", 1, clone=True), macro("1:0", 0, "batch", 2),
                macro("1:0", 0, "batch", 3)]
    assert cell.mean == pytest.approx(math.fsum(expected) / 3)
    assert cell.sd == pytest.approx(describe(expected).sd)
    counts = study.counts[(("0", "batch"), "1:0")]
    assert counts == {"done": 4, "queued": 1}  # the queued second clone is in the cell's counts


def test_paired_differences_within_a_level_and_the_interaction(db: Path) -> None:
    with open_store(db) as store:
        study = build_report(store, sweep=FACTORIAL)
    # Δ 0:1 − 1:1 at ot.weight=1, batch: seeds 1, 2 at 1:1 (3 cancelled), 1, 2, 3 at 0:1 → pairs 1,
    # 2
    d = study.differences[(("1", "batch"), "0:1", MACRO)]
    want = {s: macro("0:1", 1, "batch", s) - macro("1:1", 1, "batch", s) for s in (1, 2)}
    assert d.seeds == (1, 2) and d.mean == pytest.approx(sum(want.values()) / 2)
    assert (("1", "batch"), "1:1", MACRO) not in study.differences  # the baseline itself
    one = study.differences[(("1", "batch"), "1:0", MACRO)]   # 1:0 has seeds 1, 3; 1:1 has 1, 2
    assert one.n == 1 and one.seeds == (1,)
    # The interaction: Δ ot.weight=1 − ot.weight=0 per ratio, mixing and unit, paired by seed.
    by = {(x.factor, x.panel, x.ratio, x.unit): x for x in study.interactions}
    x = by[("ot.weight", ("1", "within"), "0:1", MACRO)]
    assert (x.level_a, x.level_b) == ("0", "1")
    # seed 1 queued at λ=1
    want = {s: macro("0:1", 1, "within", s) - macro("0:1", 0, "within", s) for s in (2, 3)}
    assert x.diff.seeds == (2, 3) and x.diff.mean == pytest.approx(sum(want.values()) / 2)
    low = by[("ot.weight", ("1", "batch"), "0:1", group_unit("low"))]
    assert low.diff.mean > by[("ot.weight", ("1", "batch"), "0:1",
                               group_unit("high"))].diff.mean > 0
    # seed 1 at batch is the retry: a plain run
    mixing = by[("train.mixing", ("0", "within"), "1:1", MACRO)]
    assert mixing.diff.mean == pytest.approx(paired_difference(
        {s: macro("1:1", 0, "within", s) for s in (1, 2, 3)},
        {s: macro("1:1", 0, "batch", s) for s in (1, 2, 3)}).mean)


def test_every_format_carries_the_factors(db: Path) -> None:
    with open_store(db) as store:
        study = build_report(store, sweep=FACTORIAL)
    data = json.loads(render(study, "json"))
    assert data["factors"] == ["ot.weight", "train.mixing"] and len(data["panels"]) == 4
    row = next(r for r in data["summary"] if r["ratio"] == "0:1" and r["name"] == "low"
               and r["factors"] == {"ot.weight": "1", "train.mixing": "within"})
    assert row["n"] == 2
    assert {x["reason"] for x in data["excluded"]} == {"superseded", "not done"}
    assert any(x["factor"] == "ot.weight" and x["level"] == "1" for x in data["interactions"])
    import csv
    import io
    rows = list(csv.DictReader(io.StringIO(render(study, "csv"))))
    assert {"ot.weight", "train.mixing"} <= set(rows[0])
    assert any(r["section"] == "interactions" and r["ot.weight"] == "1" for r in rows)
    assert sum(r["section"] == "excluded" for r in rows) == 6
    md = render(study, "md")
    assert "| ot.weight | train.mixing | ratio | n | high | low | macro |" in md
    assert "**Δ mAP ot.weight=1 − ot.weight=0 (same ratio, paired by seed)**" in md
    assert "Not counted: superseded" in md and "Factors: ratio (rows) × ot.weight (0, 1)" in md
    assert render(study, "tex").count(r"\begin{tabular}") == len(tables(study)) == 6


def test_plot_has_one_panel_per_level_combination(db: Path, tmp_path: Path) -> None:
    from engine.study.plot import save_plot

    with open_store(db) as store:
        study = build_report(store, sweep=FACTORIAL)
    svg = save_plot(study, tmp_path / "grid.svg").read_text()
    for panel in ("ot.weight=0 train.mixing=batch", "ot.weight=1 train.mixing=within"):
        assert panel in svg


# --------------------------------------------------------------------------- the rules, pure


def experiment(i: int, ratio: str, seed: int, status: Status, *,
               factors: dict[str, Any] | None = None,
               config: Config | None = None, retry_of: int | None = None) -> Experiment:
    cfg = with_run(config or Config(), ratio, seed)
    return Experiment(id=i, name="s", ratio=ratio, seed=seed, priority=0, status=status,
                      config=cfg.to_dict(),
                      code_version="", attempts=1, max_attempts=3, created_at=0.0, started_at=0.0,
                      finished_at=60.0, heartbeat_at=None, worker_id=None, cancel_requested=False,
                      error=None,
                      step=10, total_steps=10, device="cpu", retry_of=retry_of,
                      factors=factors or {})


def series(value: float, split: str = Split.FULL) -> dict[str, dict[int, float]]:
    return {metric_key(split, Setting.MUL, u, MetricName.MAP): {10: value}
            for u in (MACRO, group_unit("high"), group_unit("low"),
                      *(lang_unit(x) for x in ("ar", "en")))}


def test_pure_core_rules_without_a_store() -> None:
    exps = [experiment(1, "1:1", 0, Status.DONE), experiment(2, "1:1", 1, Status.DONE),
            experiment(3, "1:1", 1, Status.DONE),            # same cell and seed as #2: #3 counts
            experiment(4, "1:1", 2, Status.DONE),            # done, but nothing recorded
            experiment(5, "1:1", 3, Status.RUNNING)]
    points = {1: series(0.5), 2: series(0.9), 3: series(0.7), 5: series(0.1)}
    study = compute_study(exps, points, selection="test")
    assert [r.experiment_id for r in study.runs] == [1, 3]
    assert study.summary[((), "1:1", MACRO)].mean == pytest.approx(0.6)
    assert {x.experiment_id: x.reason for x in study.excluded} == {
        2: Exclusion.SUPERSEDED, 4: Exclusion.NO_VALUES, 5: Exclusion.NOT_DONE}
    # A running run's points never count, whatever they say.
    assert compute_study(exps[4:], points, selection="t").runs == ()


def test_runs_that_differ_in_config_are_never_pooled() -> None:
    lam0 = Config().replace(ot={"weight": 0.0})
    exps = [experiment(1, "1:1", 0, Status.DONE), experiment(2, "1:1", 0, Status.DONE, config=lam0),
            experiment(3, "1:1", 1, Status.DONE, config=Config().replace(train={"device": "cpu"}))]
    study = compute_study(exps, {1: series(0.5), 2: series(0.4), 3: series(0.6)}, selection="t")
    # ot.weight differs without a --sweep: split by it (seed 0 at λ=0 and λ=1 are not duplicates);
    # train.device does not change what is trained: noted, not split.
    assert study.factors == ("ot.weight",) and study.panels == (("0",), ("1",))
    assert study.summary[(("1",), "1:1", MACRO)].n == 2 and study.summary[(("0",), "1:1",
                                                                           MACRO)].n == 1
    assert any("ot.weight without a --sweep" in n for n in study.notes)
    assert any("train.device" in n and "not split" in n for n in study.notes)


def test_quick_subset_fallback_and_before_training() -> None:
    exps = [experiment(1, "1:1", 0, Status.DONE), experiment(2, "1:1", 1, Status.DONE)]
    quick = {i: {k: {0: 0.3, **v} for k, v in series(0.5 + i / 10, Split.QUICK).items()}
             for i in (1, 2)}
    quick[1].update(series(0.9))  # only run 1 has the full benchmark: both are read from eval/…
    study = compute_study(exps, quick, selection="t")
    assert study.source == Split.QUICK and study.subset
    assert study.summary[((), "1:1", MACRO)].mean == pytest.approx(0.65)
    assert study.before[((), MACRO)].mean == pytest.approx(0.3)
    assert compute_study(exps, quick, selection="t", source="full").runs[0].values[MACRO] == 0.9


def test_model_selection_is_said_and_used() -> None:
    from engine.metric_keys import TrainKey
    from engine.study.formats import caption

    best = Config().replace(train={"select": "best-dev"}, data={"dev_questions": 50})
    exps = [experiment(1, "1:1", 0, Status.DONE, config=best),
            experiment(2, "1:1", 1, Status.DONE, config=best)]
    points = {i: {k: {5: 0.8, 10: 0.6} for k in series(0.0, Split.QUICK)} for i in (1, 2)}
    for i in (1, 2):
        points[i][TrainKey.SELECTED_STEP] = {10: 5.0}
    study = compute_study(exps, points, selection="t")
    assert study.select == "best-dev" and [r.selected_step for r in study.runs] == [5, 5]
    # the selected step's value, not the last
    assert study.summary[((), "1:1", MACRO)].mean == pytest.approx(0.8)
    assert ("train.select = best-dev" in " ".join(caption(study))
            and "selected steps 5" in " ".join(caption(study)))
    last = compute_study([experiment(1, "1:1", 0, Status.DONE)], {1: points[1]}, selection="t")
    assert last.summary[((), "1:1", MACRO)].mean == pytest.approx(0.6)
    expected = "each run's model after its last training step (train.select = last)"
    assert expected in " ".join(caption(last))


# --------------------------------------------------------------------------- dashboard == report


def rendered(screen: RatioStudyScreen) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    table = screen.query_one("#study-table", DataTable)
    rows = [tuple(str(c) for c in table.get_row_at(i)) for i in range(table.row_count)]
    return tuple(str(c.label) for c in table.columns.values()), rows


@synchronous
async def test_the_study_screen_shows_the_numbers_of_optical_report(db: Path,
                                                                    seeded: tuple[Path,
                                                                                  dict[str, int]]
                                                                    ) -> None:
    from optical_tui.cli import app as cli

    def report_json(*args: str) -> Any:
        res = CliRunner().invoke(cli,
                                 ["--db", str(db), "report", "--sweep", FACTORIAL, "--format",
                                  "json", *args])
        assert res.exit_code == 0, res.output
        return json.loads(res.stdout)

    async with dashboard(db) as (_, pilot):
        screen = await open_study(pilot, seeded[1]["clone"])
        for keys, args in (((), ()), (("1",), ("--setting", "mo")), (("2",), ("--setting", "cr"))):
            await pilot.press(*keys)
            await pilot.pause()
            study = screen.study
            assert study is not None
            # The same study, number for number, as the CLI's JSON…
            assert json.loads(json.dumps(to_dict(study))) == report_json(*args)
            # …and every table the screen draws holds the report's cells.
            with open_store(db) as store:
                reference = tables(build_report(store, sweep=FACTORIAL, setting=study.setting,
                                                metric=study.metric))
            for i, expected in enumerate(reference):
                screen.table_index = i
                await pilot.pause()
                _headers, rows = rendered(screen)
                assert rows == [tuple(r) for r in expected.rows], expected.title
        # Not counted runs are on screen with their reason.
        summary = str(screen.query_one("#study-summary").render())
        assert f"running #{seeded[1]['running']} (1:0 seed 2, step 100/200)" in summary
        assert f"superseded #{seeded[1]['done']} (1:0 seed 1, by #{seeded[1]['clone']})" in summary
        # One plot line per level combination (macro view with four combinations).
        plot_labels = [s.label for s in screen.query_one("#study-plot").series]
        assert plot_labels == ["macro weight=0 mixing=batch", "macro weight=0 mixing=within",
                               "macro weight=1 mixing=batch", "macro weight=1 mixing=within"]
        await pilot.press("g")  # high only
        assert [s.label.split()[0] for s in screen.query_one("#study-plot").series] == ["high"] * 4


@synchronous
async def test_a_run_that_finishes_joins_the_study_live(db: Path,
                                                        seeded: tuple[Path,
                                                                      dict[str, int]]) -> None:
    ids = seeded[1]
    async with dashboard(db) as (_, pilot):
        screen = await open_study(pilot, ids["clone"])
        assert screen.study is not None and len(screen.study.runs) == 33
        with open_store(db) as writer:
            e = writer.get(ids["running"])
            writer.flush(e.lease, [(k, STEPS, v, 0.0) for k, v in factorial_points(
                Split.FULL, e.ratio, e.factors, e.seed, STEPS).items()], step=STEPS, total=STEPS)
            writer.finish(e.lease, Status.DONE)
        await wait_for(pilot, lambda: screen.study is not None and len(screen.study.runs) == 34)
        with open_store(db) as store:
            assert json.loads(json.dumps(to_dict(screen.study))) == json.loads(render(
                build_report(store, sweep=FACTORIAL), "json"))


def test_clone_of_a_finished_run_counts_once(tmp_path: Path) -> None:
    """The bug this core fixes: the dashboard showed n=4 where the report showed n=3."""
    db = tmp_path / "e.db"
    cfg = with_run(Config(), "1:1", 0).to_dict()
    with open_store(db) as store:
        for seed in (0, 1, 2):
            store.add_experiments([NewExperiment("s", "1:1", seed,
                                                 with_run(Config(), "1:1", seed).to_dict())])
            lease = store.claim_next("w", "cpu").lease  # type: ignore[union-attr]
            store.flush(lease, [(FULL_MACRO, 10, 0.5 + seed / 10, 0.0)], step=10, total=10)
            store.finish(lease, Status.DONE)
        (c,) = store.clone([1])
        lease = store.claim_next("w", "cpu").lease  # type: ignore[union-attr]
        store.flush(lease, [(FULL_MACRO, 10, 0.9, 0.0)], step=10, total=10)
        store.finish(lease, Status.DONE)
        study = build_report(store, sweep="s")
    assert cfg["train"]["seed"] == 0
    assert study.summary[((), "1:1", MACRO)].n == 3
    assert study.summary[((), "1:1", MACRO)].mean == pytest.approx((0.9 + 0.6 + 0.7) / 3)
    assert [x.experiment_id for x in study.excluded] == [1] and c.id == 4

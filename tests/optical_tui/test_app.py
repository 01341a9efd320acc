"""Pilot tests of the dashboard on a seeded database: every screen and every user action."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from rich.console import Console
from textual.command import CommandList
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, TextArea

from engine.store import open_store
from optical_tui.app import OpticalApp
from optical_tui.poller import Poller
from optical_tui.screens.compare import CompareScreen
from optical_tui.screens.confirm import ConfirmScreen
from optical_tui.screens.experiment import ExperimentScreen
from optical_tui.screens.help import HelpScreen, help_table
from optical_tui.screens.new_experiment import NewExperimentScreen
from optical_tui.screens.queue import QueueScreen
from optical_tui.screens.ratio_study import RatioStudyScreen
from optical_tui.widgets.curves import CurvePlot
from tests.dashboard_support import (
    NOW,
    column,
    dashboard,
    open_experiment,
    open_form,
    open_study,
    queue_table,
    select,
    synchronous,
    wait_for,
)


@pytest.fixture
def ids(seeded: tuple[Path, dict[str, int]]) -> dict[str, int]:
    return seeded[1]


# --------------------------------------------------------------------------- poller


def test_poller_skips_idle_polls_and_reads_only_new_rows(db: Path, ids: dict[str, int]) -> None:
    poller = Poller(str(db))
    first = poller.poll()
    assert first is not None and len(first.experiments) == 12 and first.metrics == ()
    assert first.primary[ids["done"]][0] == "full/macro/mul/map"
    assert first.primary[ids["running"]][0] == "eval/macro/mul/map"
    assert poller.poll() is None                       # nothing committed: one PRAGMA, no reads
    with open_store(db) as writer:
        writer.flush(writer.get(ids["running"]).lease,
                     [("eval/macro/mul/map", 130, 0.5, NOW), ("train/loss", 130, 1.0, NOW)],
                     step=130, total=200)
    update = poller.poll()
    assert update is not None
    assert [(m.key, m.step) for m in update.metrics] == [("eval/macro/mul/map", 130),
                                                         ("train/loss", 130)]
    assert update.primary[ids["running"]] == ("eval/macro/mul/map", 0.5)
    assert poller.poll() is None
    poller.close()


# --------------------------------------------------------------------------- queue screen


@synchronous
async def test_queue_lists_every_experiment_with_status_progress_and_metric(db: Path,
                                                                            ids: dict[str,
                                                                                      int]) -> None:
    async with dashboard(db) as (app, _):
        table = queue_table(app)
        assert table.row_count == 12
        statuses = dict(zip(column(table, "id"), column(table, "status")))
        assert statuses[str(ids["running"])] == "▶ running"
        assert statuses[str(ids["failed"])] == "✘ failed"
        assert statuses[str(ids["cancelled"])] == "⊘ cancelled"
        row = table.get_row(str(ids["running"]))
        assert "60%" in str(row[5])                     # progress 120/200
        assert str(row[6]) not in ("-", "")             # ETA of a running run
        assert str(table.get_row(str(ids["done"]))[7]) != "-"   # latest primary metric
        assert "workers 1 alive" in str(app.screen.query_one("#status-bar").render())


@synchronous
async def test_queue_sort_filter_and_search(db: Path, ids: dict[str, int]) -> None:
    async with dashboard(db) as (app, pilot):
        table = queue_table(app)
        await pilot.press("f")                          # all -> queued
        assert column(table, "id") == [str(ids["queued"])]
        await pilot.press("f", "f")                     # -> running -> done
        assert len(column(table, "id")) == 8
        await pilot.press("f", "f", "f")                # -> failed -> cancelled -> all
        assert table.row_count == 12
        await pilot.press("s", "s")                     # id -> name -> ratio
        ratios = column(table, "ratio")
        assert ratios.index("1:0") < ratios.index("1:1") < ratios.index("0:1")
        await pilot.press("slash")
        assert isinstance(app.focused, Input)
        await pilot.press(*"lambda")
        assert column(table, "name") == ["lambda-0"]
        await pilot.press("enter", "escape")            # back to the table, then clear the search
        assert table.row_count == 12


@synchronous
async def test_queue_updates_live_when_a_writer_commits(db: Path, ids: dict[str, int]) -> None:
    async with dashboard(db) as (app, pilot):
        with open_store(db) as writer:
            writer.flush(writer.get(ids["running"]).lease, [], step=190, total=200)
        await wait_for(pilot,
                       lambda: "95%" in str(queue_table(app).get_row(str(ids["running"]))[5]))


# --------------------------------------------------------------------------- experiment screen


@contextlib.asynccontextmanager
async def experiment_screen(db: Path,
                            exp_id: int) -> AsyncIterator[tuple[Pilot, ExperimentScreen]]:
    """A fresh dashboard on `db`, with the screen of experiment `exp_id` open."""
    async with dashboard(db) as (_, pilot):
        yield pilot, await open_experiment(pilot, exp_id)


@synchronous
async def test_experiment_curves_per_language_groups_and_settings(db: Path,
                                                                  ids: dict[str, int]) -> None:
    async with experiment_screen(db, ids["done"]) as (pilot, screen):
        curve = screen.query_one("#curve", CurvePlot)
        labels = [s.label for s in curve.series]
        assert labels == ["ar*", "de", "en", "es", "hi*", "vi*", "zh"]   # zero-shot starred
        assert all(list(s.x) == [0, 50, 100, 150, 200] for s in curve.series)
        mul = [s.y for s in curve.series]
        await pilot.press("1")                                          # Mo
        assert screen.setting == "mo" and [s.y for s in curve.series] != mul
        await pilot.press("m")
        assert screen.metric == "r@1"
        await pilot.press("g")
        assert [s.label.split()[0] for s in curve.series] == ["high", "low", "macro"]
        await pilot.press("3", "m", "m", "m", "m")                      # Mul: … -> rank distance
        assert screen.metric == "rank_distance"
        await pilot.press("1")                                          # not defined for Mo
        assert screen.metric == "map"


@synchronous
async def test_experiment_training_eval_config_events_and_error_tabs(db: Path,
                                                                     ids: dict[str, int]) -> None:
    async with experiment_screen(db, ids["failed"]) as (pilot, screen):
        # training tab, drawn on show
        await pilot.press("right_square_bracket")
        losses = screen.query_one("#losses", CurvePlot)
        assert [s.label for s in losses.series] == ["loss", "loss_task", "loss_ot"]
        assert [s.label for s in screen.query_one("#lr", CurvePlot).series] == ["lr"]
        await pilot.press("e")
        assert "CUDA out of memory" in str(screen.query_one("#error-text").render())
        assert "CUDA out of memory" in str(screen.query_one("#exp-summary").render())
        events = screen.query_one("#events-table", DataTable)
        assert [str(r[1]) for r in map(events.get_row_at, range(events.row_count))] == ["queued",
                                                                                        "claimed",
                                                                                        "failed"]
        config_text = str(screen.query_one("#config-text").render())
        assert "train_langs = [\"en\", \"de\", \"es\", \"zh\"]" in config_text
        await pilot.press("right_square_bracket")                       # wraps around to the curves
        assert screen.query_one("#exp-tabs").active == "curves"
    async with experiment_screen(db, ids["done"]) as (pilot, screen):
        await pilot.press("right_square_bracket", "right_square_bracket")
        caption = str(screen.query_one("#eval-caption").render())
        assert "full benchmark" in caption
        table = screen.query_one("#eval-table", DataTable)
        rows = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        assert rows == ["ar*", "de", "en", "es", "hi*", "vi*", "zh", "high (en, de, es, vi, zh)",
                        "low (ar, hi)", "macro"]
        assert [str(c.label) for c in table.columns.values()] == ["query", "Mo mAP", "Cr mAP",
                                                                  "Mul mAP", "Mul rank dist."]


@synchronous
async def test_experiment_screen_receives_new_points_live(db: Path, ids: dict[str, int]) -> None:
    async with experiment_screen(db, ids["running"]) as (pilot, screen):
        curve = screen.query_one("#curve", CurvePlot)
        assert len(curve.series[0].x) == 3                              # steps 0, 50, 100
        with open_store(db) as writer:
            writer.flush(writer.get(ids["running"]).lease, [(f"eval/mul/{lang}/map", 150, 0.6, NOW)
                                                  for lang in ("ar", "de", "en", "es", "hi", "vi",
                                                               "zh")])
        await wait_for(pilot, lambda: len(curve.series[0].x) == 4)


@synchronous
async def test_experiment_removed_elsewhere_closes_its_screen(db: Path,
                                                              ids: dict[str, int]) -> None:
    async with experiment_screen(db, ids["done"]) as (pilot, _):
        # e.g. `optical queue rm`
        with open_store(db) as other:
            other.remove([ids["done"]])
        await wait_for(pilot,
                       lambda: isinstance(pilot.app.screen, QueueScreen)
                       and queue_table(pilot.app).row_count == 11)


# --------------------------------------------------------------------------- ratio study


@synchronous
async def test_ratio_study_orders_ratios_groups_and_marks_zero_shot(db: Path,
                                                                    ids: dict[str, int]) -> None:
    async with dashboard(db) as (_, pilot):
        screen = await open_study(pilot, ids["done"])
        study = screen.study
        # 0:1 has only a running and a failed run: neither counts, both are listed.
        assert study.ratios == ("1:0", "3:1", "1:1", "1:3")
        assert study.zero_shot == ("ar", "hi", "vi")
        assert [(x.experiment_id, x.status) for x in study.excluded] == [
            (ids["running"], "running"), (ids["failed"], "failed"), (ids["cancelled"], "cancelled")]
        summary = str(screen.query_one("#study-summary").render())
        assert (f"running #{ids['running']} (0:1 seed 1, step 120/200)" in summary
                and "counted 8 of 11" in summary)
        table = screen.query_one("#study-table", DataTable)
        assert [str(c.label) for c in table.columns.values()] == ["ratio", "n", "high", "low",
                                                                  "macro"]
        assert [str(table.get_row_at(i)[0]) for i in range(table.row_count)] == list(study.ratios)
        plot = screen.query_one("#study-plot", CurvePlot)
        assert [s.label.split()[0] for s in plot.series] == ["high", "low"]
        assert plot.series[0].yerr is not None and list(plot.series[0].x) == [0.0, 1.0, 2.0, 3.0]
        before = [s.mean for s in study.summary.values()]
        await pilot.press("1")
        assert [s.mean for s in screen.study.summary.values()] != before
        await pilot.press("right_square_bracket", "right_square_bracket", "right_square_bracket")
        assert "per query language" in str(screen.query_one("#study-view").render())
        assert "ar*" in [str(c.label) for c in table.columns.values()]


# --------------------------------------------------------------------------- new experiment form


@synchronous
async def test_new_experiment_form_validates_inline_and_queues(db: Path) -> None:
    async with dashboard(db) as (app, pilot):
        form = await open_form(pilot)
        await pilot.press(*"1:1 2:x")
        error = form.query_one("#err-ratios")
        assert error.display and "invalid ratio '2:x'" in str(error.render())
        form.query_one("#f-config", Input).value = "does-not-exist.toml"
        form.query_one("#f-overrides", TextArea).text = "train.stepz=5"
        await pilot.pause()
        assert "config file not found" in str(form.query_one("#err-config").render())
        assert "unknown key" in str(form.query_one("#err-overrides").render())
        await pilot.press("ctrl+s")                                      # refused: nothing written
        assert isinstance(app.screen, NewExperimentScreen)
        form.query_one("#f-ratios", Input).value = "1:0, 0:1"
        form.query_one("#f-seeds", Input).value = "7 8"
        form.query_one("#f-config", Input).value = ""
        form.query_one("#f-name", Input).value = "form-sweep"
        form.query_one("#f-priority", Input).value = "5"
        form.query_one("#f-overrides", TextArea).text = "train.steps=50\not.weight=0"
        await pilot.pause()
        assert "will queue 4 experiment(s)" in str(form.query_one("#form-summary").render())
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: queue_table(app).row_count == 16)
    with open_store(db) as store:
        added = store.list_experiments(name="form-sweep")
    assert sorted((e.ratio, e.seed) for e in added) == [("0:1", 7), ("0:1", 8), ("1:0", 7),
                                                        ("1:0", 8)]
    assert all(e.priority == 5 and e.config["train"]["steps"] == 50
               and e.config["ot"]["weight"] == 0.0
               for e in added)


@synchronous
async def test_new_experiment_form_queues_a_factorial_sweep(db: Path) -> None:
    async with dashboard(db) as (app, pilot):
        form = await open_form(pilot)
        form.query_one("#f-ratios", Input).value = "1:0 0:1"
        form.query_one("#f-seeds", Input).value = "1 2"
        form.query_one("#f-name", Input).value = "grid"
        form.query_one("#f-sweeps", TextArea).text = "ot.weight=0,1\ntrain.mixing=batch,sometimes"
        await pilot.pause()
        await pilot.press("ctrl+s")                       # refused, the error under its field
        assert isinstance(app.screen, NewExperimentScreen)
        sweeps_error = str(form.query_one("#err-sweeps").render())
        assert "'sometimes' is not one of batch, within" in sweeps_error
        form.query_one("#f-sweeps", TextArea).text = "ot.weight=0,1\ntrain.mixing=batch,within"
        await pilot.pause()
        summary = str(form.query_one("#form-summary").render())
        assert ("will queue 16 experiment(s)" in summary
                and "× ot.weight 0 1 × train.mixing batch within" in summary)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: queue_table(app).row_count == 28)
        assert "factors" in [str(c.label) for c in queue_table(app).columns.values()]
    with open_store(db) as store:
        added = store.list_experiments(name="grid")
    assert sorted({(e.factors["ot.weight"], e.factors["train.mixing"]) for e in added}) == [
        (0.0, "batch"), (0.0, "within"), (1.0, "batch"), (1.0, "within")]


# --------------------------------------------------------------------------- actions


async def confirm(pilot: Pilot, key: str, answer: str) -> None:
    await pilot.press(key)
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen))
    await pilot.press(answer)


@synchronous
async def test_actions_cancel_retry_clone_delete_with_confirmation(db: Path,
                                                                   ids: dict[str, int]) -> None:
    with open_store(db) as store:
        before = {e.id: e for e in store.list_experiments()}
    async with dashboard(db) as (app, pilot):
        for key, target in (("c", "running"), ("r", "failed"), ("y", "done"), ("d", "cancelled")):
            await select(pilot, ids[target])
            await confirm(pilot, key, "y")
            await wait_for(pilot, lambda: isinstance(app.screen, QueueScreen))
        await wait_for(pilot, lambda: queue_table(app).row_count == 13)   # +2 copies, -1 deleted
    with open_store(db) as store:
        after = {e.id: e for e in store.list_experiments()}
    assert after[ids["running"]].cancel_requested
    assert ids["cancelled"] not in after
    new = [e for i, e in after.items() if i not in before]
    assert sorted(((e.retry_of, e.ratio, e.seed) for e in new), key=str) == sorted(
        [(ids["failed"], before[ids["failed"]].ratio, before[ids["failed"]].seed),
         (None, before[ids["done"]].ratio, before[ids["done"]].seed)], key=str)


@synchronous
async def test_declined_and_invalid_actions_change_nothing(db: Path, ids: dict[str, int]) -> None:
    with open_store(db) as store:
        before = store.list_experiments()
    async with dashboard(db) as (app, pilot):
        for key, target in (("d", "done"), ("c", "running")):
            await select(pilot, ids[target])
            await confirm(pilot, key, "n")                                # declined
            await wait_for(pilot, lambda: isinstance(app.screen, QueueScreen))
        await select(pilot, ids["done"])
        # a done run cannot be retried
        await confirm(pilot, "r", "y")
        await wait_for(pilot, lambda: any("only failed or cancelled" in str(n.message)
                                          for n in app._notifications))
        assert app.is_running
    with open_store(db) as store:
        assert store.list_experiments() == before


# --------------------------------------------------------------------------- help, palette, entry
# points


@synchronous
async def test_help_lists_every_key_binding(db: Path) -> None:
    async with dashboard(db) as (app, pilot):
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        console = Console(record=True, width=200)
        console.print(help_table(app.screen.sections))
        text = console.export_text()
        for cls in (OpticalApp, QueueScreen, ExperimentScreen, RatioStudyScreen, CompareScreen,
                    NewExperimentScreen, ConfirmScreen):
            for binding in cls.BINDINGS:
                assert binding.tooltip and binding.tooltip in text, binding
        await pilot.press("escape")
        assert isinstance(app.screen, QueueScreen)


@synchronous
async def test_command_palette_opens_a_sweep_study(db: Path) -> None:
    async with dashboard(db) as (app, pilot):
        await pilot.press("ctrl+p")
        await pilot.press(*"study lambda")
        await wait_for(pilot, lambda: app.screen.query_one(CommandList).option_count > 0)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RatioStudyScreen))
        assert app.screen.sweep == "lambda-0"


@synchronous
async def test_the_app_never_writes_on_its_own(db: Path, ids: dict[str, int]) -> None:
    with open_store(db) as store:
        version = store.change_token()
        async with experiment_screen(db, ids["running"]) as (pilot, screen):
            await pilot.press("escape", "t")
            await wait_for(pilot, lambda: isinstance(pilot.app.screen, RatioStudyScreen)
                           and pilot.app.screen.loaded)
            await asyncio.sleep(0.2)                                    # a few idle polls
            assert screen.experiment.id == ids["running"]
        assert store.change_token() == version


def test_entry_points(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from typer.testing import CliRunner

    from optical_tui.cli import app as cli

    # `optical-tui` and `optical ui` share one definition of the dashboard's options.
    standalone = subprocess.run([sys.executable, "-c",
                                 "from optical_tui.commands.ui import main; main()",
                                 "--db", str(tmp_path)], capture_output=True, text=True, timeout=60,
                                check=False)
    assert standalone.returncode == 1 and "is a directory" in standalone.stderr
    assert standalone.stderr.count("\n") == 1  # one line, no traceback
    help_text = subprocess.run([sys.executable, "-c",
                                "from optical_tui.commands.ui import main; main()",
                                "--help"], capture_output=True, text=True, timeout=60,
                               check=True).stdout
    assert "--db" in help_text and "--poll" in help_text
    result = CliRunner().invoke(cli, ["--db", str(tmp_path), "ui"])
    assert result.exit_code == 1 and "is a directory" in result.output
    assert "ui" in CliRunner().invoke(cli, ["--help"]).output
    assert "--poll" in CliRunner().invoke(cli, ["ui", "--help"]).output

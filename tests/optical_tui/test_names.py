"""Stored strings reach terminals safely: names with terminal escapes, newlines and Rich markup are
stored verbatim and shown escaped by every command and every dashboard screen; values that used
to pass validation and fail later are refused with one `error:` line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from engine.config import Config, with_run
from engine.statuses import Status
from engine.store import NewExperiment, open_store
from optical_tui.cli import app as cli
from optical_tui.console import safe
from tests.dashboard_support import eval_points, loaded, make_app, select, synchronous, wait_for

CLEAR = "\x1b[2J"
TITLE = "\x1b]0;pwned\x07"
HOSTILE = {
    "escapes": f"a{CLEAR}b{TITLE}c\x9b31md",       # clear screen, OSC retitle, a C1 CSI
    "newline": "first\nsecond\rthird",
    "markup": "[/x]",                                  # used to raise, then break every later list
    "style": "[bold red]x",                            # used to be rendered as a style
}
# Anything a terminal would act on: C0 controls but newline, DEL, C1 controls.
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")
runner = CliRunner()


def test_safe_escapes_every_control_and_keeps_the_rest() -> None:
    assert safe(HOSTILE["escapes"]) == "a\\x1b[2Jb\\x1b]0;pwned\\x07c\\x9b31md"
    assert safe(HOSTILE["newline"]) == "first\\nsecond\\rthird"
    assert safe("tab\tok\x7f\u202eevil") == "tab\\tok\\x7f\\u202eevil"
    assert safe("line 1\nline 2", lines=True) == "line 1\nline 2"
    assert safe("[bold]ünïcödé λ=1 1:3") == "[bold]ünïcödé λ=1 1:3"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """One done run per hostile name (metrics, an event and an error that quote the name) and a
    worker on a host with an escape in its name."""
    path = tmp_path / "e.db"
    with open_store(path) as store:
        for i, name in enumerate(HOSTILE.values()):
            cfg = with_run(Config().replace(model={"query_prefix": f"q{CLEAR}: "}), "1:1", i)
            store.add_experiments([NewExperiment(name, "1:1", i, cfg.to_dict(),
                                                 factors={"ot.weight": 1.0})])
            lease = store.claim_next(f"box{TITLE}:1:cpu", "cpu").lease  # type: ignore[union-attr]
            for step in (0, 10):
                store.flush(lease,
                            [(k, step, v, 0.0)
                             for k, v in eval_points("eval", "1:1", i, step).items()],
                            step=step, total=10)
            store.log_run_event(lease, "info", f"event for {name}")
            store.finish(lease, Status.FAILED if i == 0 else Status.DONE,
                         error=f"Traceback\nValueError: {name}")
        store.register_worker(f"box{TITLE}:7:cpu", f"box{TITLE}", 7, "cpu")
    return path


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Room for whole names in tables (the console's width is fixed when it is created)."""
    from optical_tui.console import console

    monkeypatch.setattr(console, "width", 220)


def cli_run(db: Path, *args: str) -> Any:
    result = runner.invoke(cli, ["--db", str(db), *args])
    assert "Traceback (most recent call last)" not in result.output, result.output
    return result


def assert_clean(text: str) -> None:
    assert not RAW.search(text), repr(RAW.search(text))


def test_cli_shows_names_escaped_and_markup_literally(db: Path) -> None:
    listed = cli_run(db, "queue", "list")
    assert listed.exit_code == 0
    assert_clean(listed.stdout)
    assert "a\\x1b[2Jb\\x1b]0;pwned\\x07c" in listed.stdout and "[/x]" in listed.stdout
    assert "[bold red]x" in listed.stdout and "first\\nsecond" in listed.stdout
    # a newline does not split a row
    assert len(listed.stdout.strip().splitlines()) == 1 + len(HOSTILE)
    for i in (1, 2, 3, 4):
        shown = cli_run(db, "queue", "show", str(i))
        assert shown.exit_code == 0
        assert_clean(shown.stdout)
    shown = cli_run(db, "queue", "show", "1").stdout
    assert "ValueError: a\\x1b[2J" in shown and "event for a\\x1b[2J" in shown
    assert "Traceback\n" in shown  # a multi-line error keeps its lines
    for name in HOSTILE.values():  # the JSON keeps names verbatim (escaped the JSON way)
        assert name in [e["name"]
                        for e in __import__("json").loads(cli_run(db, "queue", "list",
                                                                  "--json").stdout)]
    status = cli_run(db, "worker", "status")
    assert status.exit_code == 0 and "box\\x1b]0;pwned\\x07" in status.stdout
    assert_clean(status.stdout)


def test_cli_queue_add_with_hostile_names(tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    for name in HOSTILE.values():
        added = cli_run(db, "queue", "add", "-r", "1:1", "--name", name)
        assert added.exit_code == 0, added.output
        assert_clean(added.stdout)
    listed = cli_run(db, "queue", "list")  # every later list still works
    assert listed.exit_code == 0 and "[/x]" in listed.stdout
    with open_store(db) as store:
        # stored verbatim
        assert [e.name for e in store.list_experiments()] == list(HOSTILE.values())


def test_report_table_and_errors_are_escaped(db: Path) -> None:
    for name in list(HOSTILE.values())[1:]:  # the done ones
        table = cli_run(db, "report", "--sweep", name)
        assert table.exit_code == 0, table.output
        assert_clean(table.stdout)
        assert repr(name)[1:-1] in table.stdout or safe(name) in table.stdout
        md = cli_run(db, "report", "--sweep", name, "--format", "md").stdout
        for block in re.split(r"\n\s*\n", md):  # every table row has its header's number of cells
            rows = [line for line in block.splitlines() if line.startswith("|")]
            assert len({line.count("|") for line in rows}) <= 1, block
        assert md.splitlines()[0].startswith("### ") and repr(name)[1:-1] in md.splitlines()[0]
    missing = cli_run(db, "report", "--sweep", "nope")
    assert missing.exit_code == 1 and missing.stderr.count("\n") == 1
    assert_clean(missing.stderr)
    assert "'[bold red]x'" in missing.stderr and "\\x1b[2J" in missing.stderr
    bad = cli_run(db, "report", "--sweep", f"x{CLEAR}\ny")
    assert bad.exit_code == 1 and bad.stderr.count("\n") == 1
    assert_clean(bad.stderr)


# --------------------------------------------------------------------------- validation, one line
# each


@pytest.mark.parametrize("args, message", [
    (["queue", "add", "-r", "1:1", "-s", "99999999999999999999999"],
     "--seed 99999999999999999999999: must be between"),
    (["queue", "add", "-r", "1:1", "-s", "-1"], "--seed -1: must be between 0 and 4294967295"),
    (["queue", "add", "-r", "1:1", "-s", "4294967296"], "must be between 0 and 4294967295"),
    (["queue", "add", "-r", "1:1", "-p", "99999999999999999999999"], "--priority"),
    (["queue", "add", "-r", "1:1", "--max-attempts", "99999999999999999999"], "--max-attempts"),
    (["queue", "add", "-r", "1:1", "--set", "train.steps=99999999999999999999999"], "train.steps"),
    (["queue", "add", "-r", "1:1", "--set", "data.train_langs=en,de,en"],
     "en given more than once"),
    (["queue", "add", "-r", "1e308:1"], "parts are too far apart"),
    (["queue", "show", "99999999999999999999999"], "no experiment with id 99999999999999999999999"),
    (["queue", "cancel", "1", "99999999999999999999999"], "no experiment with id"),
    (["queue", "rm", "0"], "no experiment with id 0"),
    (["queue", "rm", "--", "-5"], "no experiment with id -5"),
    (["report", "99999999999999999999999"], "no experiment with id"),
    (["report", "--format", "md", "--output", "."], "is a directory"),
    (["report", "--plot", "."], "--plot"),
])
def test_values_that_used_to_pass_are_one_error_line(tmp_path: Path, args: list[str], message: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "e.db"
    monkeypatch.chdir(tmp_path)
    cli_run(db, "queue", "add", "-r", "1:1")
    if args[0] == "report":
        with open_store(db) as store:
            lease = store.claim_next("w", "cpu").lease  # type: ignore[union-attr]
            store.flush(lease,
                        [(k, 10, v, 0.0) for k, v in eval_points("full", "1:1", 0, 10).items()],
                        step=10, total=10)
            store.finish(lease, Status.DONE)
        (tmp_path / "dir.png").mkdir()
        args = [a if a != "." or args[1] != "--plot" else str(tmp_path / "dir.png") for a in args]
    r = cli_run(db, *args)
    assert (r.exit_code == 1 and r.stderr.startswith("error: ")
            and r.stderr.count("\n") == 1), r.output
    assert message in r.stderr
    with open_store(db) as store:
        assert len(store.list_experiments()) == 1  # nothing written


def test_huge_ratio_is_stored_as_the_mixture_that_trains(tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    assert cli_run(db, "queue", "add", "-r", "1e308:1e308", "-r", "0.25:0.75").exit_code == 0
    with open_store(db) as store:
        assert [(e.ratio, e.config["train"]["ratio"])
                for e in store.list_experiments()] == [("1:1", "1:1"),
                                                                                             ("1:3",
                                                                                              "1:3")]


# --------------------------------------------------------------------------- the dashboard


def screen_text(app: Any) -> str:
    """What the terminal would be sent, as the SVG the screenshot holds."""
    svg: str = app.export_screenshot()
    assert_clean(svg)
    return svg


@synchronous
async def test_dashboard_never_sends_control_bytes_or_markup(db: Path) -> None:
    from optical_tui.screens.confirm import ConfirmScreen
    from optical_tui.screens.experiment import ExperimentScreen
    from optical_tui.screens.queue import QueueScreen
    from optical_tui.screens.ratio_study import RatioStudyScreen

    app = make_app(db)
    async with app.run_test(size=(160, 40)) as pilot:
        await loaded(pilot)
        text = screen_text(app)
        assert "\\x1b[2J" in text.replace("&#160;", " ") or "\\x1b[2J" in text
        # every experiment's header; every tab (error, config, events) of the first
        for i in (1, 2, 3, 4):
            await select(pilot, i)
            await pilot.press("enter")
            await wait_for(pilot,
                           lambda: isinstance(app.screen, ExperimentScreen) and app.screen.loaded)
            for _tab in range(6 if i == 1 else 1):
                screen_text(app)
                await pilot.press("right_square_bracket")
                await pilot.pause()
            if i == 2:
                await pilot.press("t")  # the study of this sweep
                await wait_for(pilot,
                               lambda: isinstance(app.screen, RatioStudyScreen)
                               and app.screen.loaded)
                screen_text(app)
                await pilot.press("escape")
            await pilot.press("escape")
            await wait_for(pilot, lambda: isinstance(app.screen, QueueScreen))
        await select(pilot, 2)
        await pilot.press("d")  # the confirmation quotes the name
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "first\\nsecond" in str(app.screen.query_one("#confirm-question").render())
        screen_text(app)
        await pilot.press("n")
        await pilot.press("ctrl+p")  # the palette lists every experiment by name
        await pilot.press(*"open")
        await pilot.pause(0.3)
        screen_text(app)
        await pilot.press("escape")
        assert app.is_running

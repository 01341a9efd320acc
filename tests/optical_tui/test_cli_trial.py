"""CLI defects found in the user trial of issue 20 (item 7): each test failed before its fix."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from engine.store import open_store
from optical_tui.cli import app

runner = CliRunner()
LONG = "ux-a-sweep-name-longer-than-any-terminal-column-would-keep-whole"


def run(db: Path, *args: str) -> Any:
    return runner.invoke(app, ["--db", str(db), *args])


def test_a_mistyped_command_is_told_where_the_command_lives(tmp_path: Path) -> None:
    r = run(tmp_path / "e.db", "status")
    assert r.exit_code == 1 and r.stderr.count("\n") == 1
    assert (
        "Did you mean" in r.stderr
        and "'optical worker status'" in r.stderr
        and "'optical queue list'" in r.stderr
    )
    r = run(tmp_path / "e.db", "add")
    assert "Did you mean 'optical queue add'?" in r.stderr
    assert "Did you mean" not in run(tmp_path / "e.db", "xyzzy").stderr  # nothing close: no guess


def _commands(
    group: Any, ctx: Any, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Any]]:
    # Any: Typer vendors its own click, whose types are private.
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if hasattr(cmd, "list_commands"):
            yield from _commands(cmd, ctx, (*path, name))
        elif cmd is not None:
            yield (*path, name), cmd


def test_help_texts_keep_their_brackets() -> None:
    """Typer reads help as Rich markup: `[en,de]` vanished from `queue add --help`'s own example."""
    root: Any = typer.main.get_command(app)
    checked = 0
    for path, cmd in _commands(root, root.context_class(root)):
        texts = [cmd.help or ""] + [getattr(p, "help", None) or "" for p in cmd.params]
        wanted = [
            b
            for t in texts
            for b in re.findall(r"\[[^\]\s]+\]", t.replace("\\[", "["))
            if not b.startswith("[default")
        ]
        if not wanted:
            continue
        shown = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "300"}).stdout
        for bracket in wanted:
            assert bracket in shown, (path, bracket)
            checked += 1
    assert checked >= 2  # at least queue add's example


def test_piped_queue_list_prints_names_whole(tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    assert (
        run(db, "queue", "add", "-r", "1:1", "--name", LONG, "--sweep", "ot.weight=0,1").exit_code
        == 0
    )
    r = runner.invoke(app, ["--db", str(db), "queue", "list"], env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    lines = [x for x in r.stdout.splitlines() if LONG in x]  # what `| grep` sees
    assert len(lines) == 2 and "ot.weight=0" not in r.stdout  # the short factor form, whole
    assert all(re.match(r"\s*\d+\s", x) for x in lines)  # the id column stays
    assert "weight=0" in lines[0] and "weight=1" in lines[1]


def test_queue_show_prints_the_frozen_config_and_the_provenance(tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    assert run(db, "queue", "add", "-r", "1:3", "--set", "train.lr=3e-5").exit_code == 0
    with open_store(db) as store:
        e = store.claim_next("w", "cpu")
        assert e is not None and e.lease is not None
        store.set_provenance(e.lease, {"git_commit": "abc123", "host": "box-7"})
    r = run(db, "queue", "show", "1")
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert (
        "frozen config" in out
        and "[train]" in out
        and "lr = 3e-05" in out
        and 'ratio = "1:3"' in out
    )
    assert "provenance" in out and "git_commit = abc123" in out and "host = box-7" in out
    shown = json.loads(run(db, "queue", "show", "1", "--json").stdout)
    assert shown["config"]["train"]["lr"] == 3e-5 and shown["provenance"]["host"] == "box-7"


def test_queue_add_help_shows_the_list_example() -> None:
    shown = runner.invoke(app, ["queue", "add", "--help"], env={"COLUMNS": "300"}).stdout
    assert "data.train_langs=[en,de],[en,de,es,zh]" in shown


def test_queuing_the_same_sweep_twice_is_refused_unless_allowed(tmp_path: Path) -> None:
    db = tmp_path / "e.db"

    def add(ratios: str, seeds: str, *more: str) -> Any:
        """`optical queue add` to the sweep 'twice': one -r per ratio, one -s per seed."""
        rs = [a for r in ratios.split() for a in ("-r", r)]
        ss = [a for s in seeds.split() for a in ("-s", s)]
        return run(db, "queue", "add", *rs, *ss, "--name", "twice", *more)

    grid = ("1:1 1:3", "1 2", "--sweep", "ot.weight=0,1")
    assert add(*grid).exit_code == 0
    r = add(*grid)
    assert r.exit_code == 1 and r.stderr.count("\n") == 1, r.output
    assert (
        r.stderr.startswith("error: sweep 'twice' already has 8 of these 8")
        and "--allow-duplicate" in r.stderr
    )
    with open_store(db) as store:
        assert len(store.list_experiments()) == 8  # nothing half-written
        store.request_cancel([1])
    assert add("1:1", "3", "--sweep", "ot.weight=0,1").exit_code == 0
    # another config: another cell
    assert add("1:1", "1", "--set", "train.lr=1e-5", "--sweep", "ot.weight=0").exit_code == 0
    # The cancelled #1 (1:1 seed 1 weight 0) may be queued again; its sibling #3 (weight 1) may not.
    r = add("1:1", "1", "--sweep", "ot.weight=0,1")
    assert (
        r.exit_code == 1
        and "#3 (1:1 seed 1 ot.weight=1, queued)" in r.stderr
        and "#1 " not in r.stderr
    )
    r = add(*grid, "--allow-duplicate", "--json")
    assert r.exit_code == 0 and len(json.loads(r.stdout)) == 8


@pytest.fixture
def no_screen(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The dashboard's options and checks run; the screen itself does not open."""
    from optical_tui.app import OpticalApp

    opened: list[str] = []
    monkeypatch.setattr(OpticalApp, "run", lambda self, *a, **k: opened.append(self.db_location))
    return opened


def test_the_dashboard_says_when_it_creates_a_database(
    tmp_path: Path, no_screen: list[str]
) -> None:
    (tmp_path / "mine.db").touch()
    missing = tmp_path / "typo.db"
    r = run(missing, "ui")
    assert r.exit_code == 0 and no_screen == [str(missing)]
    assert (
        r.stderr
        == f"note: no database at {missing}: created an empty one"
        " (databases in that folder: mine.db)\n"
    )
    r = run(missing, "ui")  # it exists now: nothing to say
    assert r.exit_code == 0 and r.stderr == ""


def test_in_a_terminal_the_dashboard_asks_before_creating_a_database(
    tmp_path: Path, no_screen: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from optical_tui.commands import ui

    monkeypatch.setattr(ui, "_interactive", lambda: True)
    missing = tmp_path / "typo.db"
    r = runner.invoke(app, ["--db", str(missing), "ui"], input="\n")  # the default: no
    assert r.exit_code == 1 and not missing.exists() and not no_screen
    assert "Create an empty one?" in r.stdout and r.stderr.startswith("error: no database at")
    r = runner.invoke(app, ["--db", str(missing), "ui"], input="y\n")
    assert r.exit_code == 0 and missing.exists() and no_screen == [str(missing)]


def test_queue_add_checks_the_model_and_says_what_only_the_worker_can_check(tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    r = run(db, "queue", "add", "-r", "1:1", "--set", "model.name=intfloat/multilingual-e5-smal")
    assert r.exit_code == 0, r.output
    assert r.stderr.startswith(
        "note: model.name 'intfloat/multilingual-e5-smal' is a Hugging Face id"
    )
    assert "worker's box" in r.stderr
    r = run(
        db, "queue", "add", "-r", "1:1", "--set", "model.name=embedded:e5-small", "--name", "bad"
    )
    assert r.exit_code == 1 and r.stderr.count("\n") == 1 and "no such bundled model" in r.stderr
    assert len(json.loads(run(db, "queue", "list", "--json").stdout)) == 1  # nothing written


def test_data_check_explains_a_missing_data_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After `pip install -e .` without `make`, OPTICAL_DATA is unset and ./data does not exist."""
    monkeypatch.delenv("OPTICAL_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["data", "check"], env={"COLUMNS": "300"})
    assert r.exit_code == 1
    assert (
        f"the data folder {tmp_path / 'data'} does not exist (OPTICAL_DATA is not set" in r.stdout
    )
    assert (
        "export OPTICAL_DATA=" in r.stdout and "missing: " not in r.stdout
    )  # one cause, said once
    shown = json.loads(runner.invoke(app, ["data", "check", "--json"]).stdout)
    assert shown["ok"] is False and "OPTICAL_DATA is not set" in shown["data_dir_missing"]
    monkeypatch.setenv("OPTICAL_DATA", str(tmp_path / "elsewhere"))
    r = runner.invoke(app, ["data", "check"], env={"COLUMNS": "300"})
    assert f"(OPTICAL_DATA={tmp_path / 'elsewhere'})" in r.stdout


def test_readme_gives_a_manual_install_path_that_sets_optical_data() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    manual = readme[readme.index("Installing by hand") :][:400]
    assert (
        "pip install -e" in manual
        and "export OPTICAL_DATA=" in manual
        and "optical data check" in manual
    )

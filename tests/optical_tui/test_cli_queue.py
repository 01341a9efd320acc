import json
import sqlite3

import pytest
from typer.testing import CliRunner

from engine.store import open_store
from engine.store.sqlite import SCHEMA_VERSION
from optical_tui.cli import app

runner = CliRunner()


@pytest.fixture
def db(tmp_path):
    return tmp_path / "experiments.db"


def run(db, *args):
    return runner.invoke(app, ["--db", str(db), *args])


def rows(db):
    if not db.exists():
        return []
    with open_store(db) as s:
        return s.list_experiments()


def test_add_sweep_json_and_list(db):
    r = run(db, "queue", "add", "--ratio", "1:3", "--ratio", "1:0", "--seed", "1", "--seed", "2",
            "--set", "train.lr=3e-5", "--name", "sweep-a", "--priority", "4", "--json")
    assert r.exit_code == 0, r.output
    added = json.loads(r.stdout)
    assert [(e["ratio"], e["seed"]) for e in added] == [("1:3", 1), ("1:3", 2), ("1:0", 1),
                                                        ("1:0", 2)]
    assert all(e["config"]["train"]["lr"] == 3e-5 and e["priority"] == 4 for e in added)
    assert (added[0]["config"]["train"]["ratio"] == "1:3"
            and added[1]["config"]["train"]["seed"] == 2)
    listed = json.loads(run(db, "queue", "list", "--json").stdout)
    assert [e["id"] for e in listed] == [1, 2, 3, 4]
    table = run(db, "queue", "list")
    assert table.exit_code == 0 and "1:3" in table.stdout and "queued" in table.stdout
    shown = json.loads(run(db, "queue", "show", "2", "--json").stdout)
    assert shown["seed"] == 2 and shown["events"][0]["kind"] == "queued"


def test_config_file_and_default_name(db, tmp_path):
    cfg = tmp_path / "mine.toml"
    cfg.write_text("[train]\nsteps = 7\n")
    r = run(db, "queue", "add", "-r", "1:1", "--config", str(cfg), "--json")
    assert r.exit_code == 0, r.output
    (e,) = json.loads(r.stdout)
    assert e["name"] == "mine" and e["config"]["train"]["steps"] == 7


@pytest.mark.parametrize("ratio", ["1:3:5", "a:b", "-1:2", "0:0", "nan:1", "inf:1", ""])
def test_bad_ratio_one_line_error_nothing_written(db, ratio):
    run(db, "queue", "add", "-r", "1:1")
    r = run(db, "queue", "add", "--ratio", "1:2", "--ratio", ratio)
    assert r.exit_code == 1
    assert r.stderr.startswith("error: invalid ratio") and r.stderr.count("\n") == 1
    assert "Traceback" not in r.output
    assert len(rows(db)) == 1  # the valid first ratio was not written either


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "train.lrr=1"], "unknown key"),
        (["--set", "train.steps=ten"], "train.steps"),
        (["--set", "nosection"], "section.key=value"),
        (["--config", "/definitely/missing.toml"], "not found"),
    ],
)
def test_bad_config_errors(db, args, message):
    r = run(db, "queue", "add", "-r", "1:1", *args)
    assert r.exit_code == 1 and message in r.stderr and "Traceback" not in r.output
    assert rows(db) == []


def test_config_not_toml(db, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("this = is = not toml")
    r = run(db, "queue", "add", "-r", "1:1", "--config", str(bad))
    assert r.exit_code == 1 and "not valid TOML" in r.stderr
    assert rows(db) == []


def test_unknown_ids(db):
    run(db, "queue", "add", "-r", "1:1")
    for cmd in (["show", "42"], ["cancel", "1", "42"], ["retry", "42"], ["rm", "42"],
                ["show", "abc"]):
        r = run(db, "queue", *cmd)
        assert r.exit_code == 1 and r.stderr.startswith("error:"), cmd
    assert rows(db)[0].status == "queued"  # the cancel of [1, 42] wrote nothing


def test_cancel_retry_rm_flow(db):
    run(db, "queue", "add", "-r", "1:1", "-s", "1", "-s", "2")
    assert run(db, "queue", "cancel", "1").exit_code == 0
    r = run(db, "queue", "retry", "1")
    assert r.exit_code == 0 and "retried as #3" in r.stdout
    assert run(db, "queue", "retry", "2").exit_code == 1  # queued: nothing to retry
    assert run(db, "queue", "rm", "1", "3").exit_code == 0
    assert [e.id for e in rows(db)] == [2]
    assert json.loads(run(db, "queue", "list", "--status", "queued", "--json").stdout)[0]["id"] == 2
    assert run(db, "queue", "list", "--status", "bogus").exit_code == 1


def test_hostile_names_verbatim(db):
    names = ["a'; DROP TABLE experiments; --", 'say "hi"', "x" * 10_000]
    for n in names:
        assert run(db, "queue", "add", "-r", "1:1", "--name", n).exit_code == 0
    assert [e.name for e in rows(db)] == names
    assert run(db, "queue", "list").exit_code == 0


def test_db_errors(tmp_path):
    r = run(tmp_path, "queue", "list")
    assert r.exit_code == 1 and "is a directory" in r.stderr
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"PK\x03\x04 zip file, not sqlite")
    r = run(junk, "queue", "add", "-r", "1:1")
    assert r.exit_code == 1 and "not an SQLite database" in r.stderr
    assert junk.read_bytes().startswith(b"PK")
    newer = tmp_path / "newer.db"
    open_store(newer).close()
    con = sqlite3.connect(newer)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 3}")
    con.close()
    r = run(newer, "queue", "add", "-r", "1:1")
    assert r.exit_code == 1 and "newer" in r.stderr


def test_db_check(db):
    run(db, "queue", "add", "-r", "1:1")
    r = run(db, "db", "check", "--json")
    assert r.exit_code == 0
    report = json.loads(r.stdout)
    assert (report["ok"] and report["schema_version"] == SCHEMA_VERSION
            and report["experiments"]["queued"] == 1)
    assert "schema version" in run(db, "db", "check").stdout


def test_env_var_selects_db(tmp_path, monkeypatch):
    target = tmp_path / "env.db"
    monkeypatch.setenv("OPTICAL_DB", str(target))
    r = runner.invoke(app, ["queue", "add", "-r", "1:1"])
    assert r.exit_code == 0 and target.exists()


def test_help_explains():
    r = runner.invoke(app, ["queue", "add", "--help"])
    assert r.exit_code == 0 and "--ratio" in r.stdout and "--set" in r.stdout


def test_tables_fit_a_terminal_and_are_never_cut_without_one(db):
    """Rich assumes 80 columns when no terminal is attached and cut tables there; a terminal's
    own width (COLUMNS here) is still what a table fits."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    name = "a-sweep-name-long-enough-to-be-cut-at-eighty-columns-and-beyond"
    added = run(db, "queue", "add", "--ratio", "1:1", "--sweep", "ot.weight=0,0.5", "--name", name)
    assert added.exit_code == 0
    optical = [sys.executable, "-c", "from optical_tui.cli import main; main()", "--db", str(db),
               "queue", "list"]
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])

    def listing(**extra):
        done = subprocess.run(optical, env={**env, **extra}, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0 and done.stderr == "", done.stderr
        return done.stdout.splitlines()

    piped = listing()  # no terminal at all: stdin, stdout and stderr are not ttys
    assert all(name in line and "weight=0" in line for line in piped[1:])
    assert "…" not in "".join(piped)
    assert max(map(len, piped)) > 120
    # On a real terminal (a pty, 100 columns) the table fits its width; piped output never is cut.
    import shlex
    pty = subprocess.run(["script", "-qec", shlex.join(optical), "/dev/null"],
                         env={**env, "COLUMNS": "100"},
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
                         check=False)
    assert pty.returncode == 0, pty.stdout
    import re as _re
    narrow = [_re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", line) for line in pty.stdout.splitlines()]
    assert max(len(line.rstrip()) for line in narrow) <= 100 and "…" in narrow[1]

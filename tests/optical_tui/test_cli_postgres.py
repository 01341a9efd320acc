"""The `optical` CLI on a PostgreSQL URL (a real server, tests/pg_fixtures.py): the same commands
work, `db check` and `db copy` work on both stores, and bad input is one `error:` line, exit
status 1, nothing written, and never the password."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from engine.store import open_store
from engine.store.pg_server import PgServer
from engine.store.postgres import SCHEMA_VERSION
from optical_tui.cli import app

runner = CliRunner()


def run(db: str | Path, *args: str):  # -> click.testing.Result
    return runner.invoke(app, ["--db", str(db), *args])


def one_error_line(result, password: str = "") -> str:  # result: click.testing.Result
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.output
    if password:
        assert password not in result.output
    return result.stderr


def test_queue_commands_work_on_postgres(pg_url: str) -> None:
    r = run(pg_url, "queue", "add", "-r", "1:3", "-r", "1:0", "-s", "1", "-s", "2", "--json")
    assert r.exit_code == 0, r.output
    assert [e["id"] for e in json.loads(r.stdout)] == [1, 2, 3, 4]
    assert run(pg_url, "queue", "cancel", "1").exit_code == 0
    r = run(pg_url, "queue", "retry", "1")
    assert r.exit_code == 0 and "retried as #5" in r.stdout
    assert run(pg_url, "queue", "rm", "1", "5").exit_code == 0
    listed = json.loads(run(pg_url, "queue", "list", "--json").stdout)
    assert [e["id"] for e in listed] == [2, 3, 4]
    shown = json.loads(run(pg_url, "queue", "show", "2", "--json").stdout)
    assert shown["seed"] == 2 and shown["events"][0]["kind"] == "queued"


def test_env_var_selects_a_postgres_url(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTICAL_DB", pg_url)
    assert runner.invoke(app, ["queue", "add", "-r", "1:1"]).exit_code == 0
    with open_store(pg_url) as store:
        assert len(store.list_experiments()) == 1


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_db_check_on_both_stores(backend: str, tmp_path: Path,
                                 request: pytest.FixtureRequest) -> None:
    db = str(tmp_path / "x.db") if backend == "sqlite" else request.getfixturevalue("pg_url")
    run(db, "queue", "add", "-r", "1:1")
    r = run(db, "db", "check", "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["ok"] and report["experiments"]["queued"] == 1
    assert report["backend"] == ("sqlite" if backend == "sqlite" else "postgresql")
    text = run(db, "db", "check").stdout
    assert "schema version" in text
    assert ("journal wal" in text) if backend == "sqlite" else ("PostgreSQL" in text)
    assert ":***@" in text or backend == "sqlite"


def test_db_copy_both_ways(tmp_path: Path, pg_url: str, pg_server: PgServer) -> None:
    src, back = tmp_path / "src.db", tmp_path / "back.db"
    run(src, "queue", "add", "-r", "1:3", "-r", "3:1", "-s", "1", "-s", "2")
    run(src, "queue", "cancel", "2")
    r = runner.invoke(app, ["db", "copy", str(src), pg_url, "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["experiments"] == 4 and out["events"] == 5 and pg_server.password not in r.stdout
    r = runner.invoke(app, ["db", "copy", pg_url, str(back)])
    assert (r.exit_code == 0 and "copied 4 experiments" in r.stdout
            and pg_server.password not in r.stdout)
    listings = [json.loads(run(db, "queue", "list", "--json").stdout) for db in (src, pg_url, back)]
    assert listings[0] == listings[1] == listings[2]


def test_db_copy_into_a_non_empty_study_is_refused(tmp_path: Path, pg_url: str) -> None:
    src = tmp_path / "src.db"
    run(src, "queue", "add", "-r", "1:3")
    run(pg_url, "queue", "add", "-r", "1:1", "--name", "already-here")
    err = one_error_line(runner.invoke(app, ["db", "copy", str(src), pg_url]))
    assert "not empty" in err
    with open_store(pg_url) as store:
        assert [e.name for e in store.list_experiments()] == ["already-here"]
    missing = tmp_path / "missing.db"
    assert "no such database file" in one_error_line(runner.invoke(app,
                                                                   ["db", "copy", str(missing),
                                                                    pg_url]))
    assert not missing.exists()


def test_bad_urls_are_one_error_line_and_write_nothing(pg_server: PgServer, pg_url: str,
                                                        tmp_path: Path) -> None:
    password = pg_server.password
    base = pg_url.rsplit("/", 1)[0]
    cases = {
        pg_url.replace(f":{password}@", ":wrong-password@"): "wrong user name or password",
        f"postgresql://optical:{password}@127.0.0.1:1/optical": "is the server running",
        base: "no database name",
        base + "/": "no database name",
        f"mysql://optical:{password}@127.0.0.1/db": "unknown scheme",
        base + "/no_such_database": "create that database first",
    }
    src = tmp_path / "src.db"
    run(src, "queue", "add", "-r", "1:1")
    for url, message in cases.items():
        for args in (["queue", "add", "-r", "1:1"], ["queue", "list"], ["db", "check"]):
            err = one_error_line(run(url, *args), password)
            assert message in err and "wrong-password" not in err, (url, err)
        err = one_error_line(runner.invoke(app, ["db", "copy", str(src), url]), password)
        assert message in err and "wrong-password" not in err, (url, err)
    with open_store(pg_url) as store:   # the one good URL saw no write
        assert store.list_experiments() == []


def test_a_newer_schema_is_refused_by_every_command(pg_url: str) -> None:
    run(pg_url, "queue", "add", "-r", "1:1")
    with psycopg.connect(pg_url) as conn:
        conn.execute("UPDATE meta SET value = %s WHERE key = 'schema_version'",
                     (SCHEMA_VERSION + 1,))
    for args in (["queue", "add", "-r", "1:1"], ["queue", "list"], ["db", "check"],
                 ["queue", "cancel", "1"]):
        assert "newer than this optical-tui" in one_error_line(run(pg_url, *args))
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT count(*), min(status) FROM experiments").fetchone()
    assert row == (1, "queued")

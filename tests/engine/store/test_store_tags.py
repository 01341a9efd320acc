"""Tags and notes in both backends: written, changed all or nothing, carried by retry and clone,
moved by `db copy` SQLite → PostgreSQL → SQLite, and added to databases made before them."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlite_utils

from engine.errors import ConfigError, ExperimentNotFound
from engine.statuses import EventKind, Status
from engine.store import NewExperiment, Store, open_store, postgres_schema, sqlite_schema
from engine.store.copy import copy_study
from engine.tags import parse_changes, parse_tags


def spec(seed: int, tags: tuple[str, ...] = ()) -> NewExperiment:
    return NewExperiment(
        name="sweep", ratio="1:1", seed=seed, config={"train": {"lr": 3e-5}}, tags=tags
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    location = (
        str(tmp_path / "t.db") if request.param == "sqlite" else request.getfixturevalue("pg_url")
    )
    with open_store(location) as s:
        yield s


def test_tags_and_notes_are_stored_changed_and_logged(store: Store) -> None:
    a, b = store.add_experiments([spec(1, ("baseline", "v2")), spec(2)])
    assert a.tags == ("baseline", "v2") and b.tags == () and a.note == b.note == ""
    changed = store.retag([a.id, b.id], add=("keep",), remove=("v2",))
    assert [e.tags for e in changed] == [("baseline", "keep"), ("keep",)]
    assert (
        store.annotate(b.id, "lr too high; rerun with 1e-5").note == "lr too high; rerun with 1e-5"
    )
    assert store.get(b.id).note == "lr too high; rerun with 1e-5" and store.get(a.id).note == ""
    logged = [(ev.kind, ev.message) for ev in store.events(a.id)]
    assert (EventKind.INFO, "tags +keep -v2") in logged
    assert (EventKind.INFO, "note: lr too high; rerun with 1e-5") in [
        (ev.kind, ev.message) for ev in store.events(b.id)
    ]
    # A change that changes nothing logs nothing.
    n_events = len(store.events())
    store.retag([a.id], add=("keep",))
    assert len(store.events()) == n_events
    assert store.annotate(b.id, "").note == ""


def test_an_unknown_id_changes_nothing(store: Store) -> None:
    (a,) = store.add_experiments([spec(1)])
    with pytest.raises(ExperimentNotFound):
        store.retag([a.id, a.id + 50], add=("x",))
    with pytest.raises(ExperimentNotFound):
        store.annotate(a.id + 50, "x")
    assert store.get(a.id).tags == ()


def test_retry_and_clone_keep_the_tags_not_the_note(store: Store) -> None:
    (a,) = store.add_experiments([spec(1, ("sweep-a",))])
    store.annotate(a.id, "diverged")
    store.request_cancel([a.id])
    (again,) = store.retry([a.id])
    (twin,) = store.clone([a.id])
    assert again.tags == twin.tags == ("sweep-a",) and again.note == twin.note == ""


def test_tags_and_notes_survive_db_copy_sqlite_postgres_sqlite(tmp_path: Path, pg_url: str) -> None:
    src, back = str(tmp_path / "src.db"), str(tmp_path / "back.db")
    with open_store(src) as s:
        a, b, _ = s.add_experiments([spec(1, ("paper", "λ=1")), spec(2, ("paper",)), spec(3)])
        s.annotate(a.id, "best so far 🙂\nsecond line")
        s.retag([b.id], add=("outlier",))
        original = s.list_experiments()
    copy_study(src, pg_url)
    copy_study(pg_url, back)
    for location in (pg_url, back):
        with open_store(location) as s:
            assert s.list_experiments() == original
            assert s.get(a.id).note == "best so far 🙂\nsecond line"
            assert s.get(b.id).tags == ("outlier", "paper")


def test_an_sqlite_database_from_before_tags_upgrades(tmp_path: Path) -> None:
    path = tmp_path / "v4.db"
    conn = sqlite3.connect(path)
    for migrate in sqlite_schema.MIGRATIONS[:4]:
        migrate(sqlite_utils.Database(conn))
    conn.execute(
        "INSERT INTO experiments (id, name, ratio, seed, priority, status, config, created_at) "
        "VALUES (1, 'old', '1:1', 0, 0, ?, '{}', 1.0)",
        (Status.DONE.value,),
    )
    conn.execute("UPDATE meta SET value = 1 WHERE key = 'last_experiment_id'")
    conn.execute("PRAGMA user_version = 4")
    conn.commit()
    conn.close()
    with open_store(path) as s:
        assert s.schema_version() == sqlite_schema.SCHEMA_VERSION == 5
        (old,) = s.list_experiments()
        assert (old.name, old.tags, old.note) == ("old", (), "")
        assert s.retag([1], add=("legacy",))[0].tags == ("legacy",)


def test_a_postgres_database_from_before_tags_upgrades(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(postgres_schema.MIGRATIONS[0])
        conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', 1)")
        conn.execute(
            "INSERT INTO experiments (name, ratio, seed, status, config, created_at) "
            "VALUES ('old', '1:1', 0, %s, '{}', 1.0)",
            (Status.DONE.value,),
        )
    with open_store(pg_url) as s:
        assert s.schema_version() == postgres_schema.SCHEMA_VERSION == 2
        (old,) = s.list_experiments()
        assert (old.name, old.tags, old.note) == ("old", (), "")
        assert s.annotate(old.id, "from v1").note == "from v1"


def test_tag_words_are_checked() -> None:
    assert parse_tags(["b,a", "a", " c "]) == ("a", "b", "c")
    assert parse_changes(["+x", "-y", "z"]) == (("x", "z"), ("y",))
    for bad in (["has space"], ["+"], ["x", "-x"], [], ["a" * 41], ["-+x"]):
        with pytest.raises(ConfigError):
            parse_changes(bad)
    with pytest.raises(ConfigError):
        parse_tags(["ok,no way"])

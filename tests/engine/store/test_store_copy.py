"""`optical db copy`'s engine (engine/store/copy.py): a whole study between SQLite and a real
PostgreSQL, both directions, with every experiment, metric point and event equal afterwards."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from engine.errors import StoreError
from engine.statuses import Status
from engine.store import NewExperiment, open_store
from engine.store.copy import copy_study
from engine.store.pg_server import PgServer


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        self.t += 0.25
        return self.t


def spec(seed: int, **kw: object) -> NewExperiment:
    return NewExperiment(name="sweep", ratio="1:3", seed=seed,
                         config={"train": {"lr": 3e-5, "steps": seed}},
                         **kw)  # type: ignore[arg-type]


def seed_study(location: str) -> None:
    """A study in every state a real one reaches, through the public Store API."""
    with open_store(location, clock=Clock(1_700_000_000.0)) as s:
        s.register_worker("box:1:cuda0", "box", 1, "cuda:0")
        s.add_experiments([spec(i, priority=i % 3, factors={"ot.weight": 0.5 * i},
                                code_version="abc") for i in range(6)])
        claimed = [s.claim_next("box:1:cuda0", "cuda:0") for _ in range(4)]
        leases = [c.lease for c in claimed if c is not None and c.lease is not None]
        for lease in leases:
            i = lease.experiment_id
            s.set_provenance(lease, {"code_version": "def", "host": "box"})
            s.flush(lease, [(f"train/loss{i}", step, 1.0 / (step + 1) + 1e-13 * i, 100.0 + step)
                            for step in range(50)], step=50, total=100)
            s.log_run_event(lease, "info", f"resumed from step {i}")
        s.finish(leases[0], Status.DONE)
        s.finish(leases[1], Status.FAILED, error="Traceback …\nRuntimeError: CUDA out of memory")
        queued = s.list_experiments(status=Status.QUEUED)
        # running: flagged; queued: cancelled
        s.request_cancel([leases[2].experiment_id, queued[0].id])
        (retry,) = s.retry([leases[1].experiment_id])
        assert retry.retry_of == leases[1].experiment_id
        # The newest experiment goes: its id was handed out and must never be handed out again.
        s.remove([retry.id])
        s.log_event(None, "warning", "🙂 ünïcode and 'quotes'")


def snapshot(location: str) -> tuple[list[object], list[object], list[object]]:
    with open_store(location) as s:
        return s.list_experiments(), s.metrics(), s.events()  # type: ignore[return-value]


def last_ids(location: str) -> tuple[int, int, int]:
    with open_store(location) as s, s.export_study() as study:
        return study.last_ids["experiments"], study.last_ids["metrics"], study.last_ids["events"]


def test_sqlite_to_postgres_and_back_keeps_every_row(tmp_path: Path, pg_url: str) -> None:
    src, back = str(tmp_path / "src.db"), str(tmp_path / "back.db")
    seed_study(src)
    original = snapshot(src)
    experiments, metrics, events = original
    assert len(experiments) == 6 and len(metrics) == 200 and len(events) == 20

    assert copy_study(src, pg_url) == {"experiments": 6, "metrics": 200, "events": len(events)}
    assert snapshot(pg_url) == original
    assert copy_study(pg_url, back) == {"experiments": 6, "metrics": 200, "events": len(events)}
    assert snapshot(back) == original

    # New ids continue after the highest the source ever handed out (experiment 7 was removed,
    # so 7 is above every id still present; it is never handed out again).
    top = last_ids(src)
    assert top[0] == 7 and last_ids(pg_url) == top and last_ids(back) == top
    for location in (pg_url, back):
        with open_store(location) as s:
            (new,) = s.add_experiments([spec(9, priority=100)])
            lease = s.claim_next("w").lease
            assert lease is not None and lease.experiment_id == new.id == top[0] + 1
            s.flush(lease, [("train/loss", 1, 1.0, 1.0)])
            assert s.metrics(new.id)[0].rowid > top[1] and s.events()[-1].id > top[2]
            assert s.check()["ok"]


def test_postgres_to_postgres(pg_server: PgServer, pg_url: str, tmp_path: Path) -> None:
    seed_study(pg_url)
    name = "copy_target"
    target = pg_server.create_database(name)
    try:
        copy_study(pg_url, target)
        assert snapshot(target) == snapshot(pg_url)
    finally:
        pg_server.drop_database(name)


@pytest.mark.parametrize("direction", ["into-postgres", "into-sqlite"])
def test_a_non_empty_destination_is_refused_and_left_as_it_was(tmp_path: Path, pg_url: str,
                                                                direction: str) -> None:
    src = str(tmp_path / "src.db")
    seed_study(src)
    if direction == "into-postgres":
        source, dst = src, pg_url
    else:
        source, dst = pg_url, str(tmp_path / "dst.db")
        seed_study(pg_url)
    with open_store(dst) as s:
        s.add_experiments([spec(42)])
    before = snapshot(dst)
    with pytest.raises(StoreError, match="is not empty"):
        copy_study(source, dst)
    assert snapshot(dst) == before
    # Emptied again, it still handed out ids once: refused as well (a copied id would collide).
    with open_store(dst) as s:
        s.remove([e.id for e in s.list_experiments()])
    with pytest.raises(StoreError, match="held data before"):
        copy_study(source, dst)
    assert snapshot(dst) == ([], [], [])


def test_a_missing_source_or_the_same_database_writes_nothing(tmp_path: Path, pg_url: str) -> None:
    dst = tmp_path / "dst.db"
    with pytest.raises(StoreError, match="no such database file"):
        copy_study(str(tmp_path / "missing.db"), str(dst))
    assert not dst.exists() and not (tmp_path / "missing.db").exists()
    with pytest.raises(StoreError, match="same database"):
        copy_study(pg_url, pg_url)
    seed_study(str(dst))
    with pytest.raises(StoreError, match="same database"):
        copy_study(str(dst), f"sqlite:///{dst}")


def test_a_failed_copy_removes_the_file_it_created(tmp_path: Path, pg_url: str) -> None:
    # The source opens (its schema version is fine) but cannot be read: the copy fails after the
    # destination file was created, and that file goes again.
    seed_study(pg_url)
    with psycopg.connect(pg_url) as conn:
        conn.execute("ALTER TABLE metrics RENAME TO metrics_elsewhere")
    dst = tmp_path / "new.db"
    with pytest.raises(StoreError, match="metrics"):
        copy_study(pg_url, str(dst))
    assert sorted(tmp_path.iterdir()) == []

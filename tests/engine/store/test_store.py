"""The store contract (engine/store/base.py), run against both backends: SQLite and a real
PostgreSQL (tests/pg_fixtures.py: one server per session, a fresh database per test).
Backend-specific behaviour: the SQLite-only tests at the end, and tests/test_store_postgres.py."""

import dataclasses
import json
import multiprocessing as mp
import sqlite3
import time

import pytest

from engine.errors import ExperimentNotFound, InvalidTransition, LeaseLost, StoreError
from engine.statuses import Status, WorkerStatus
from engine.store import NewExperiment, RunLease, open_store
from engine.store.sqlite_schema import MIGRATIONS, SCHEMA_VERSION


class Clock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture(params=["sqlite", "postgres"])
def location(request, tmp_path):
    """Where a fresh, empty store lives: an SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "exp.db")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(location, clock):
    s = open_store(location, clock=clock)
    yield s
    s.close()


def at(t):
    """A time the store wrote. SQLite takes it from the injected clock; PostgreSQL from the
    server's clock shifted by the injected clock's offset, so it lands within milliseconds."""
    return pytest.approx(t, abs=0.5)


def spec(ratio="1:1", seed=0, priority=0, name="sweep", **kw):
    return NewExperiment(name=name, ratio=ratio, seed=seed, priority=priority,
                         config={"train": {"ratio": ratio}}, **kw)


def test_schema_created_and_checked(store):
    check = store.check()
    assert check["ok"] and check["integrity"] == ["ok"]
    assert store.schema_version() == check["schema_version"] == check["supported_schema_version"]
    assert check["location"] == store.location and check["experiments"]["queued"] == 0
    if check["backend"] == "sqlite":
        assert check["journal_mode"] == "wal" and check["schema_version"] == SCHEMA_VERSION
    else:
        assert check["backend"] == "postgresql" and ":***@" in check["location"]


def test_add_get_and_frozen_dataclasses(store):
    (e,) = store.add_experiments([spec("1:3", 2)])
    assert e.status == Status.QUEUED and e.ratio == "1:3" and e.seed == 2
    assert e.config == {"train": {"ratio": "1:3"}}
    assert store.get(e.id) == e
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.status = "done"  # type: ignore[misc]
    with pytest.raises(ExperimentNotFound):
        store.get(999)


def test_claim_order_priority_then_fifo(store):
    a, b, c = store.add_experiments([spec(seed=1), spec(seed=2, priority=5),
                                     spec(seed=3, priority=5)])
    order = [store.claim_next("w").id for _ in range(3)]
    assert order == [b.id, c.id, a.id]
    assert store.claim_next("w") is None
    assert all(x.attempts == 1 and x.status == Status.RUNNING for x in store.list_experiments())


def test_flush_is_idempotent_per_step_and_returns_cancel(store, clock):
    (e,) = store.add_experiments([spec()])
    lease = store.claim_next("w1").lease
    clock.t += 5
    assert store.flush(lease, [("train/loss", 1, 2.0, 1.0), ("train/loss", 2, 1.5, 2.0)], step=2,
                       total=10) is False
    # A resumed run re-sends step 2 with another value: the first point is kept, never duplicated.
    store.flush(lease, [("train/loss", 2, 9.9, 3.0), ("train/loss", 3, 1.0, 3.0)], step=3)
    pts = [(m.step, m.value) for m in store.metrics(e.id)]
    assert pts == [(1, 2.0), (2, 1.5), (3, 1.0)]
    got = store.get(e.id)
    assert got.step == 3 and got.total_steps == 10 and got.heartbeat_at == at(clock.t)
    store.request_cancel([e.id])
    assert store.flush(lease, []) is True


def test_only_owner_may_write(store):
    (e,) = store.add_experiments([spec()])
    lease = store.claim_next("w1").lease
    other = RunLease(e.id, "w2", lease.attempt)
    for write in (lambda: store.flush(other, [("x", 1, 1.0, 1.0)]),
                  lambda: store.finish(other, Status.DONE),
                  lambda: store.set_provenance(other, {}),
                  lambda: store.log_run_event(other, "info", "x"),
                  lambda: store.release(other)):
        with pytest.raises(LeaseLost):
            write()
    assert store.metrics(e.id) == [] and store.get(e.id).status == Status.RUNNING


def test_fence_includes_the_attempt_so_a_reused_worker_id_cannot_write(store, clock):
    # Containers and Slurm reuse pids and host names: the same worker id can claim the run again
    # after its lease expired; the paused first process still holds attempt 1 and must write
    # nothing.
    (e,) = store.add_experiments([spec()])
    old = store.claim_next("host:1:cpu").lease
    clock.t += 100
    assert store.requeue_stale(lease_s=60) == [e.id]
    new = store.claim_next("host:1:cpu").lease
    assert (old.worker_id, old.attempt + 1) == (new.worker_id, new.attempt)
    for write in (lambda: store.flush(old, [("train/loss", 1, 1.0, 1.0)], step=1),
                  lambda: store.finish(old, Status.DONE),
                  lambda: store.log_run_event(old, "info", "zombie"),
                  lambda: store.release(old)):
        with pytest.raises(LeaseLost):
            write()
    assert store.metrics(e.id) == []
    assert store.flush(new, [("train/loss", 1, 1.0, 1.0)], step=1) is False
    assert store.get(e.id).status == Status.RUNNING and store.get(e.id).attempts == 2


def test_terminal_states_are_final(store):
    (e,) = store.add_experiments([spec()])
    lease = store.claim_next("w1").lease
    store.finish(lease, Status.DONE)
    assert store.get(e.id).status == Status.DONE and store.get(e.id).finished_at is not None
    with pytest.raises(LeaseLost):
        store.finish(lease, Status.FAILED)
    with pytest.raises(InvalidTransition, match="already done"):
        store.request_cancel([e.id])
    with pytest.raises(InvalidTransition, match="only failed or cancelled"):
        store.retry([e.id])
    assert store.get(e.id).status == Status.DONE


def test_cancel_retry_remove(store):
    q, r = store.add_experiments([spec(seed=1), spec(seed=2)])
    store.claim_next("w")  # claims q
    out = {x.id: x for x in store.request_cancel([q.id, r.id])}
    assert out[q.id].status == Status.RUNNING and out[q.id].cancel_requested
    assert out[r.id].status == Status.CANCELLED
    (copy,) = store.retry([r.id])
    assert copy.status == Status.QUEUED and copy.retry_of == r.id and copy.config == r.config
    assert store.get(r.id).status == Status.CANCELLED
    # A second retry of the same run would queue a second copy: refused, naming the first.
    with pytest.raises(InvalidTransition, match=f"already retried as #{copy.id}"):
        store.retry([r.id])
    assert len(store.list_experiments()) == 3
    with pytest.raises(InvalidTransition, match="running; cancel it first"):
        store.remove([q.id])
    assert store.remove([r.id]) == 1
    with pytest.raises(ExperimentNotFound):
        store.get(r.id)


def test_bad_id_in_batch_writes_nothing(store):
    (a,) = store.add_experiments([spec()])
    with pytest.raises(ExperimentNotFound):
        store.request_cancel([a.id, 12345])
    assert store.get(a.id).status == Status.QUEUED


def test_requeue_stale_then_fail_after_max_attempts(store, clock):
    (e,) = store.add_experiments([spec(max_attempts=2)])
    store.claim_next("w1")
    clock.t += 30
    assert store.requeue_stale(lease_s=60) == []
    assert store.heartbeat_ages() == {e.id: at(30)}
    clock.t += 100
    assert store.requeue_stale(lease_s=60) == [e.id]
    assert store.get(e.id).status == Status.QUEUED
    store.claim_next("w2")
    assert store.get(e.id).attempts == 2
    clock.t += 100
    store.requeue_stale(lease_s=60)
    got = store.get(e.id)
    assert got.status == Status.FAILED and "no heartbeat" in got.error


def test_a_lost_run_with_a_pending_cancel_ends_cancelled_not_failed(store, clock):
    (e,) = store.add_experiments([spec(max_attempts=1)])
    store.claim_next("w1")
    store.request_cancel([e.id])
    clock.t += 100
    store.requeue_stale(lease_s=60)
    assert store.get(e.id).status == Status.CANCELLED


def test_attempt_start_is_recorded_for_the_eta(store, clock):
    (_e,) = store.add_experiments([spec()])
    lease = store.claim_next("w1").lease
    store.flush(lease, [], step=40, total=100)
    clock.t += 100
    store.requeue_stale(lease_s=60)
    clock.t += 50
    again = store.claim_next("w2")
    assert again.started_at == at(1000.0) and again.attempt_started_at == at(clock.t)
    assert again.attempt_start_step == 40


def test_claim_next_passes_over_the_runs_a_worker_skips(store):
    # A box that lacks a run's data hands it back and skips it from then on.
    a, b = store.add_experiments([spec(seed=0, priority=5), spec(seed=1)])
    assert store.claim_next("w1", skip={a.id}).id == b.id
    assert store.claim_next("w1", skip=[a.id]) is None
    assert store.claim_next("w2").id == a.id


def test_release_returns_run_to_queue_without_spending_an_attempt(store):
    (e,) = store.add_experiments([spec()])
    store.release(store.claim_next("w1").lease, "worker draining")
    got = store.get(e.id)
    assert got.status == Status.QUEUED and got.attempts == 0 and got.worker_id is None


def test_release_after_a_crash_counts_the_attempt_and_fails_when_none_are_left(store):
    (e,) = store.add_experiments([spec(max_attempts=2)])
    store.release(store.claim_next("w1").lease, "killed", count_attempt=True)
    assert store.get(e.id).status == Status.QUEUED and store.get(e.id).attempts == 1
    store.release(store.claim_next("w1").lease, "killed again", count_attempt=True)
    got = store.get(e.id)
    # The messages say what happened next, and never both "requeued" and "no attempts left".
    assert got.status == Status.FAILED
    assert got.error == "killed again; not requeued: no attempts left (2/2 used)"
    assert [m.message for m in store.events(e.id) if m.kind in ("requeued", "failed")] == [
        "killed; requeued to resume from its last checkpoint (1/2 attempts used)", got.error]


def test_hostile_names_are_stored_verbatim(store):
    names = ["x'); DROP TABLE experiments;--", 'quote " and \' both', "n" * 10_000, "🙂 ünïcode"]
    added = store.add_experiments([spec(name=n) for n in names])
    assert [store.get(e.id).name for e in added] == names
    assert len(store.list_experiments()) == 4
    assert store.list_experiments(name=names[0])[0].name == names[0]


def test_metrics_prefix_and_latest(store):
    (e,) = store.add_experiments([spec()])
    lease = store.claim_next("w").lease
    store.flush(lease, [("eval/mul/hi/map", 0, 0.1, 0), ("eval/mul/hi/map", 10, 0.3, 1),
                        ("eval/mul/ar/map", 10, 0.2, 1), ("train/loss", 10, 3.0, 1)])
    assert ({m.key for m in store.metrics(e.id, prefix="eval/")}
            == {"eval/mul/hi/map", "eval/mul/ar/map"})
    assert store.latest_metric("eval/mul/hi/map") == {e.id: 0.3}
    assert store.metrics(e.id, keys=["train/loss"])[0].value == 3.0


def test_metrics_since_sees_every_new_point_once(store):
    _a, b = store.add_experiments([spec(seed=1), spec(seed=2)])
    la, lb = store.claim_next("w").lease, store.claim_next("w").lease
    store.flush(la, [("train/loss", 1, 1.0, 1.0)])
    new, cursor = store.metrics_since(None)
    assert new == []  # a new reader starts at the end
    store.flush(lb, [("train/loss", 1, 2.0, 1.0), ("train/loss", 2, 3.0, 1.0)])
    new, cursor = store.metrics_since(cursor)
    assert [(m.experiment_id, m.step) for m in new] == [(b.id, 1), (b.id, 2)]
    assert store.metrics_since(cursor)[0] == []


def test_metric_ids_are_never_reused_after_a_delete(store):
    # A reader's cursor sits after the deleted rows' ids; a reused id would hide new points.
    a, b = store.add_experiments([spec(seed=1), spec(seed=2)])
    la, lb = store.claim_next("w").lease, store.claim_next("w").lease
    store.flush(la, [("train/loss", s, 1.0, 1.0) for s in range(5)])
    store.finish(la, Status.DONE)
    _, cursor = store.metrics_since(None)
    store.remove([a.id])
    store.flush(lb, [("train/loss", 1, 2.0, 1.0)])
    new, _ = store.metrics_since(cursor)
    assert [(m.experiment_id, m.value) for m in new] == [(b.id, 2.0)]
    ev_before = store.events()[-1].id
    store.log_event(None, "info", "after the delete")
    assert store.events()[-1].id > ev_before


def test_events_since_sees_every_new_event_once(store):
    store.log_event(None, "info", "before")
    old, cursor = store.events_since(None)   # a new reader gets the history and a cursor
    assert [ev.message for ev in old] == ["before"]
    (e,) = store.add_experiments([spec()])
    store.log_event(e.id, "info", "after")
    new, cursor = store.events_since(cursor)
    assert [(ev.experiment_id, ev.kind) for ev in new] == [(e.id, "queued"), (e.id, "info")]
    assert store.events_since(cursor)[0] == []


def test_change_token_changes_on_foreign_commit(location):
    with open_store(location) as a, open_store(location) as b:
        v = a.change_token()
        assert a.change_token() == v
        a.list_experiments()
        assert a.change_token() == v  # reading is not a change
        b.add_experiments([spec()])
        # PostgreSQL delivers the notification just after the commit: allow it a moment.
        deadline = time.monotonic() + 10
        while a.change_token() == v and time.monotonic() < deadline:
            time.sleep(0.01)
        assert a.change_token() != v


def test_events_and_workers(store):
    store.register_worker("h:1:cpu", "h", 1, "cpu")
    store.register_worker("g:2:cpu", "g", 2, "cpu")
    assert store.worker_heartbeat("h:1:cpu", None, WorkerStatus.IDLE) is False
    assert store.request_worker_stop(host="h") == 1  # one box drains, the other keeps serving
    assert store.worker_heartbeat("h:1:cpu", None, WorkerStatus.IDLE) is True
    assert store.worker_heartbeat("g:2:cpu", None, WorkerStatus.IDLE) is False
    store.unregister_worker("h:1:cpu")
    assert [w.id for w in store.list_workers()] == ["g:2:cpu"]
    assert len(store.list_workers(include_stopped=True)) == 2
    kinds = [ev.kind for ev in store.events()]
    assert kinds.count("worker") == 3


def test_workers_silent_for_long_are_marked_gone_once_and_kept(store, clock):
    store.register_worker("h:1:cpu", "h", 1, "cpu")
    store.register_worker("g:2:cpu", "g", 2, "cpu")
    clock.t += 100
    store.worker_heartbeat("g:2:cpu", 7, WorkerStatus.RUNNING)
    assert store.reap_workers(180) == []
    clock.t += 100
    assert store.reap_workers(180) == ["h:1:cpu"]  # silent 200 s; g spoke 100 s ago
    assert store.reap_workers(180) == []  # marked once
    assert [w.id for w in store.list_workers()] == ["g:2:cpu"]
    rows = {w.id: (w.status, w.experiment_id) for w in store.list_workers(include_stopped=True)}
    assert rows == {"h:1:cpu": ("gone", None), "g:2:cpu": ("running", 7)}
    assert [e.message for e in store.events()][-1] == "worker h:1:cpu gone: no heartbeat for 200s"
    store.unregister_worker("g:2:cpu")
    clock.t += 1000
    assert store.reap_workers(180) == []  # a stopped worker stays stopped
    store.worker_heartbeat("h:1:cpu", None, WorkerStatus.IDLE)  # it was only paused: back
    assert [w.id for w in store.list_workers()] == ["h:1:cpu"]


def test_open_errors(tmp_path):
    with pytest.raises(StoreError, match="is a directory"):
        open_store(tmp_path)
    junk = tmp_path / "junk.db"
    junk.write_text("this is not sqlite at all, just text")
    with pytest.raises(StoreError, match="not an SQLite database"):
        open_store(junk)
    with pytest.raises(StoreError, match="does not exist"):
        open_store(tmp_path / "nope" / "x.db")
    with pytest.raises(StoreError, match="not a regular file"):
        open_store("/dev/null")
    device_link = tmp_path / "link.db"
    device_link.symlink_to("/dev/full")
    with pytest.raises(StoreError, match="not a regular file"):
        open_store(device_link)
    with pytest.raises(StoreError, match="unknown scheme 'mysql'") as err:
        open_store("mysql://u:secret@h/db")
    assert "secret" not in str(err.value)
    newer = tmp_path / "newer.db"
    open_store(newer).close()
    conn = sqlite3.connect(newer)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this optical-tui"):
        open_store(newer)


def test_sqlite_url_and_redacted_locations(tmp_path):
    from engine.store import redact

    with open_store(f"sqlite:///{tmp_path}/u.db") as s:
        assert s.location == f"{tmp_path}/u.db"
    assert redact("postgresql://optical:s3cret@h:5432/db") == "postgresql://optical:***@h:5432/db"


def test_migration_from_empty_file_and_reopen(tmp_path):
    p = tmp_path / "empty.db"
    p.write_bytes(b"")
    open_store(p).add_experiments([spec()])
    again = open_store(p)
    assert again.schema_version() == SCHEMA_VERSION and len(again.list_experiments()) == 1


def _claimer(path, worker, start, out):
    s = open_store(path)
    start.wait(timeout=120)  # all four start claiming at the same moment
    got = []
    while (e := s.claim_next(worker)) is not None:
        got.append(e.id)
    out.put((worker, got))


def test_concurrent_processes_claim_each_experiment_exactly_once(location):
    path = location
    with open_store(path) as s:
        s.add_experiments([spec(seed=i) for i in range(60)])
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    start = ctx.Barrier(4)
    procs = [ctx.Process(target=_claimer, args=(str(path), f"w{i}", start, out)) for i in range(4)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    claimed = [i for _, ids in results for i in ids]
    assert sorted(claimed) == list(range(1, 61))  # every row once, none twice
    with open_store(path) as s:
        rows = s.list_experiments()
        assert all(r.status == Status.RUNNING and r.attempts == 1 for r in rows)
        owners = {r.id: r.worker_id for r in rows}
    for worker, ids in results:
        assert all(owners[i] == worker for i in ids)
    assert json.dumps(owners)  # worker ids are plain strings


def test_migrations_upgrade_an_old_database_in_order(tmp_path):
    import sqlite_utils

    p = tmp_path / "v1.db"
    conn = sqlite3.connect(p)
    MIGRATIONS[0](sqlite_utils.Database(conn))
    conn.execute("INSERT INTO experiments (name, ratio, seed, priority, status, config, "
                 "created_at) VALUES ('n', '1:1', 0, 0, 'done', '{}', 1.0)")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    s = open_store(p)
    assert s.schema_version() == SCHEMA_VERSION
    indexes = {tuple(i.columns) for i in s.db.table("metrics").indexes}
    assert ("key", "experiment_id", "step") in indexes
    assert [e.id for e in s.list_experiments()] == [1]
    assert s.add_experiments([spec()])[0].id == 2


def test_ids_are_never_reused_after_remove(store):
    a, b = store.add_experiments([spec(seed=1), spec(seed=2)])
    store.remove([b.id])
    (c,) = store.add_experiments([spec(seed=3)])
    assert c.id == b.id + 1  # a reused id would pick up the deleted run's checkpoint directory
    store.remove([a.id, c.id])
    (d,) = store.add_experiments([spec(seed=4)])
    assert d.id == c.id + 1


def test_database_errors_inside_a_transaction_become_store_errors_and_roll_back(tmp_path):
    # A real "disk full": cap the file's page count so the insert itself fails (SQLITE_FULL).
    s = open_store(tmp_path / "full.db")
    (e,) = s.add_experiments([spec()])
    lease = s.claim_next("w").lease
    pages = s.conn.execute("PRAGMA page_count").fetchone()[0]
    s.conn.execute(f"PRAGMA max_page_count = {pages}")
    big = [("train/loss", i, 1.0, 1.0) for i in range(20_000)]
    with pytest.raises(StoreError, match="full"):
        s.flush(lease, big, step=1)
    assert not s.conn.in_transaction
    assert s.metrics(e.id) == [] and s.get(e.id).step == 0  # nothing half-written
    s.conn.execute(f"PRAGMA max_page_count = {pages * 1000}")
    s.flush(lease, big[:10], step=1)  # the same connection works once there is room again
    assert len(s.metrics(e.id)) == 10


def test_a_read_only_database_gives_a_store_error(tmp_path):
    # As root file modes do not stop writes, so make the connection itself read-only.
    with open_store(tmp_path / "ro.db") as s:
        s.conn.execute("PRAGMA query_only = ON")
        with pytest.raises(StoreError, match="not writable"):
            s.add_experiments([spec()])
        assert s.list_experiments() == []

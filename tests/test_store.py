import dataclasses
import json
import multiprocessing as mp
import sqlite3

import pytest

from engine.errors import ExperimentNotFound, InvalidTransition, StoreError
from engine.store import SCHEMA_VERSION, LeaseLost, NewExperiment, Store


class Clock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(tmp_path, clock):
    s = Store(tmp_path / "exp.db", clock=clock)
    yield s
    s.close()


def spec(ratio="1:1", seed=0, priority=0, name="sweep", **kw):
    return NewExperiment(name=name, ratio=ratio, seed=seed, priority=priority, config={"train": {"ratio": ratio}}, **kw)


def test_schema_created_with_wal(store):
    assert store.schema_version() == SCHEMA_VERSION
    check = store.check()
    assert check["ok"] and check["journal_mode"] == "wal"


def test_add_get_and_frozen_dataclasses(store):
    (e,) = store.add_experiments([spec("1:3", 2)])
    assert e.status == "queued" and e.ratio == "1:3" and e.seed == 2 and e.config == {"train": {"ratio": "1:3"}}
    assert store.get(e.id) == e
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.status = "done"  # type: ignore[misc]
    with pytest.raises(ExperimentNotFound):
        store.get(999)


def test_claim_order_priority_then_fifo(store):
    a, b, c = store.add_experiments([spec(seed=1), spec(seed=2, priority=5), spec(seed=3, priority=5)])
    order = [store.claim_next("w").id for _ in range(3)]
    assert order == [b.id, c.id, a.id]
    assert store.claim_next("w") is None
    assert all(x.attempts == 1 and x.status == "running" for x in store.list_experiments())


def test_flush_is_idempotent_per_step_and_returns_cancel(store, clock):
    (e,) = store.add_experiments([spec()])
    store.claim_next("w1")
    clock.t += 5
    assert store.flush(e.id, "w1", [("train/loss", 1, 2.0, 1.0), ("train/loss", 2, 1.5, 2.0)], step=2, total=10) is False
    # A resumed run re-sends step 2 with another value: the first point is kept, never duplicated.
    store.flush(e.id, "w1", [("train/loss", 2, 9.9, 3.0), ("train/loss", 3, 1.0, 3.0)], step=3)
    pts = [(m.step, m.value) for m in store.metrics(e.id)]
    assert pts == [(1, 2.0), (2, 1.5), (3, 1.0)]
    got = store.get(e.id)
    assert got.step == 3 and got.total_steps == 10 and got.heartbeat_at == clock.t
    store.request_cancel([e.id])
    assert store.flush(e.id, "w1", []) is True


def test_only_owner_may_write(store):
    (e,) = store.add_experiments([spec()])
    store.claim_next("w1")
    with pytest.raises(LeaseLost):
        store.flush(e.id, "w2", [("x", 1, 1.0, 1.0)])
    with pytest.raises(LeaseLost):
        store.finish(e.id, "w2", "done")


def test_terminal_states_are_final(store):
    (e,) = store.add_experiments([spec()])
    store.claim_next("w1")
    store.finish(e.id, "w1", "done")
    assert store.get(e.id).status == "done" and store.get(e.id).finished_at is not None
    with pytest.raises(LeaseLost):
        store.finish(e.id, "w1", "failed")
    with pytest.raises(InvalidTransition, match="already done"):
        store.request_cancel([e.id])
    with pytest.raises(InvalidTransition, match="only failed or cancelled"):
        store.retry([e.id])
    assert store.get(e.id).status == "done"


def test_cancel_retry_remove(store):
    q, r = store.add_experiments([spec(seed=1), spec(seed=2)])
    store.claim_next("w")  # claims q
    out = {x.id: x for x in store.request_cancel([q.id, r.id])}
    assert out[q.id].status == "running" and out[q.id].cancel_requested
    assert out[r.id].status == "cancelled"
    (copy,) = store.retry([r.id])
    assert copy.status == "queued" and copy.retry_of == r.id and copy.config == r.config
    assert store.get(r.id).status == "cancelled"
    with pytest.raises(InvalidTransition, match="running; cancel it first"):
        store.remove([q.id])
    assert store.remove([r.id]) == 1
    with pytest.raises(ExperimentNotFound):
        store.get(r.id)


def test_bad_id_in_batch_writes_nothing(store):
    (a,) = store.add_experiments([spec()])
    with pytest.raises(ExperimentNotFound):
        store.request_cancel([a.id, 12345])
    assert store.get(a.id).status == "queued"


def test_requeue_stale_then_fail_after_max_attempts(store, clock):
    (e,) = store.add_experiments([spec(max_attempts=2)])
    store.claim_next("w1")
    clock.t += 30
    assert store.requeue_stale(lease_s=60) == []
    clock.t += 100
    assert store.requeue_stale(lease_s=60) == [e.id]
    assert store.get(e.id).status == "queued"
    store.claim_next("w2")
    assert store.get(e.id).attempts == 2
    clock.t += 100
    store.requeue_stale(lease_s=60)
    got = store.get(e.id)
    assert got.status == "failed" and "no heartbeat" in got.error


def test_release_returns_run_to_queue_without_spending_an_attempt(store):
    (e,) = store.add_experiments([spec()])
    store.claim_next("w1")
    store.release(e.id, "w1", "worker draining")
    got = store.get(e.id)
    assert got.status == "queued" and got.attempts == 0 and got.worker_id is None


def test_hostile_names_are_stored_verbatim(store):
    names = ["x'); DROP TABLE experiments;--", 'quote " and \' both', "n" * 10_000, "🙂 ünïcode"]
    added = store.add_experiments([spec(name=n) for n in names])
    assert [store.get(e.id).name for e in added] == names
    assert len(store.list_experiments()) == 4
    assert store.list_experiments(name=names[0])[0].name == names[0]


def test_metrics_prefix_and_latest(store):
    (e,) = store.add_experiments([spec()])
    store.claim_next("w")
    store.flush(e.id, "w", [("eval/mul/hi/map", 0, 0.1, 0), ("eval/mul/hi/map", 10, 0.3, 1),
                            ("eval/mul/ar/map", 10, 0.2, 1), ("train/loss", 10, 3.0, 1)])
    assert {m.key for m in store.metrics(e.id, prefix="eval/")} == {"eval/mul/hi/map", "eval/mul/ar/map"}
    assert store.latest_metric("eval/mul/hi/map") == {e.id: 0.3}
    first = store.metrics(e.id)
    assert store.metrics(e.id, after_rowid=first[1].rowid) == first[2:]


def test_data_version_changes_on_foreign_commit(tmp_path):
    a, b = Store(tmp_path / "d.db"), Store(tmp_path / "d.db")
    v = a.data_version()
    assert a.data_version() == v
    b.add_experiments([spec()])
    assert a.data_version() != v


def test_events_and_workers(store):
    store.register_worker("h:1:cpu", "h", 1, "cpu")
    assert store.worker_heartbeat("h:1:cpu", None, "idle") is False
    assert store.request_worker_stop() == 1
    assert store.worker_heartbeat("h:1:cpu", None, "idle") is True
    store.unregister_worker("h:1:cpu")
    assert store.list_workers() == []
    assert len(store.list_workers(include_stopped=True)) == 1
    kinds = [ev.kind for ev in store.events()]
    assert kinds.count("worker") == 2


def test_open_errors(tmp_path):
    with pytest.raises(StoreError, match="is a directory"):
        Store(tmp_path)
    junk = tmp_path / "junk.db"
    junk.write_text("this is not sqlite at all, just text")
    with pytest.raises(StoreError, match="not an SQLite database"):
        Store(junk)
    with pytest.raises(StoreError, match="does not exist"):
        Store(tmp_path / "nope" / "x.db")
    newer = tmp_path / "newer.db"
    Store(newer).close()
    conn = sqlite3.connect(newer)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this optical-tui"):
        Store(newer)


def test_migration_from_empty_file_and_reopen(tmp_path):
    p = tmp_path / "empty.db"
    p.write_bytes(b"")
    Store(p).add_experiments([spec()])
    again = Store(p)
    assert again.schema_version() == SCHEMA_VERSION and len(again.list_experiments()) == 1


def _claimer(path, worker, out):
    s = Store(path)
    got = []
    while (e := s.claim_next(worker)) is not None:
        got.append(e.id)
    out.put((worker, got))


def test_concurrent_processes_claim_each_experiment_exactly_once(tmp_path):
    path = tmp_path / "race.db"
    with Store(path) as s:
        s.add_experiments([spec(seed=i) for i in range(60)])
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_claimer, args=(str(path), f"w{i}", out)) for i in range(4)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    claimed = [i for _, ids in results for i in ids]
    assert sorted(claimed) == list(range(1, 61))  # every row once, none twice
    with Store(path) as s:
        rows = s.list_experiments()
        assert all(r.status == "running" and r.attempts == 1 for r in rows)
        owners = {r.id: r.worker_id for r in rows}
    for worker, ids in results:
        assert all(owners[i] == worker for i in ids)
    assert json.dumps(owners)  # worker ids are plain strings


def test_migrations_upgrade_an_old_database_in_order(tmp_path):
    import sqlite_utils

    from engine.store import MIGRATIONS

    p = tmp_path / "v1.db"
    conn = sqlite3.connect(p)
    MIGRATIONS[0](sqlite_utils.Database(conn))
    conn.execute("INSERT INTO experiments (name, ratio, seed, priority, status, config, created_at) VALUES ('n', '1:1', 0, 0, 'done', '{}', 1.0)")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    s = Store(p)
    assert s.schema_version() == SCHEMA_VERSION
    indexes = {tuple(i.columns) for i in s.db["metrics"].indexes}
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

"""What only the PostgreSQL store has to get right (the shared contract runs in
tests/test_store.py).

A real server (tests/pg_fixtures.py); raw psycopg connections play the other processes where a
test needs a transaction held open at an exact point, which the store itself never does.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from engine.errors import OpticalError, StoreError
from engine.statuses import Status
from engine.store import NewExperiment, open_store
from engine.store.pg_server import PgServer
from engine.store.postgres import PostgresStore
from engine.store.postgres_schema import SCHEMA_VERSION

REPO = Path(__file__).resolve().parents[3]


def spec(seed: int = 0, priority: int = 0) -> NewExperiment:
    return NewExperiment(name="sweep", ratio="1:1", seed=seed, priority=priority,
                         config={"train": {}})


def hold_point(conn: psycopg.Connection[Any], exp_id: int, step: int) -> int:
    """Insert a metric point in `conn`'s open transaction (as a slow writer would) and return
    its id."""
    row = conn.execute("INSERT INTO metrics (experiment_id, key, step, value, time) "
                       "VALUES (%s, 'train/loss', %s, 1.0, 1.0) RETURNING id",
                       (exp_id, step)).fetchone()
    assert row is not None
    return int(row[0])


# --------------------------------------------------------------------------- readers


def test_a_point_that_commits_late_is_still_read(pg_url: str) -> None:
    """Tx A inserts a point and stays open; tx B inserts one (a higher id) and commits; the reader
    reads; A commits; the reader's next read returns A's point."""
    with open_store(pg_url) as writer, open_store(pg_url) as reader:
        a, b = writer.add_experiments([spec(1), spec(2)])
        writer.claim_next("wa")
        lease_b = writer.claim_next("wb").lease
        assert lease_b is not None
        _, cursor = reader.metrics_since(None)
        with psycopg.connect(pg_url) as slow:                # not autocommit: A stays open
            late_id = hold_point(slow, a.id, 1)               # A: inserted, not committed
            writer.flush(lease_b, [("train/loss", 1, 2.0, 1.0)])  # B: committed
            new, cursor = reader.metrics_since(cursor)
            assert [m.experiment_id for m in new] == [b.id]
            seen_id = new[0].rowid
            assert seen_id > late_id
            slow.commit()
        # What a reader of "ids after the last one" would get now: nothing, A's point is lost.
        assert [m for m in reader.metrics() if m.rowid > seen_id] == []
        new, cursor = reader.metrics_since(cursor)
        assert [(m.rowid, m.experiment_id) for m in new] == [(late_id, a.id)]
        assert reader.metrics_since(cursor)[0] == []          # and nothing twice


def test_an_event_that_commits_late_is_still_read(pg_url: str) -> None:
    with open_store(pg_url) as writer, open_store(pg_url) as reader:
        (e,) = writer.add_experiments([spec()])
        _, cursor = reader.events_since(None)
        with psycopg.connect(pg_url) as slow:
            late = slow.execute("INSERT INTO events (experiment_id, time, kind, message) "
                                "VALUES (%s, 1.0, 'info', 'late') RETURNING id", (e.id,)).fetchone()
            writer.log_event(e.id, "info", "early")
            new, cursor = reader.events_since(cursor)
            assert [ev.message for ev in new] == ["early"]
            slow.commit()
        new, cursor = reader.events_since(cursor)
        assert late is not None and [(ev.id, ev.message) for ev in new] == [(late[0], "late")]
        assert reader.events_since(cursor)[0] == []


def test_a_rolled_back_point_never_appears_and_does_not_hold_the_cursor(pg_url: str) -> None:
    with open_store(pg_url) as writer, open_store(pg_url) as reader:
        (e,) = writer.add_experiments([spec()])
        lease = writer.claim_next("w").lease
        assert lease is not None
        _, cursor = reader.metrics_since(None)
        with psycopg.connect(pg_url) as slow:
            hold_point(slow, e.id, 7)
            new, cursor = reader.metrics_since(cursor)
            assert new == []
            slow.rollback()
        writer.flush(lease, [("train/loss", 8, 1.0, 1.0)])
        new, cursor = reader.metrics_since(cursor)
        assert [m.step for m in new] == [8]
        assert isinstance(cursor, object) and reader.metrics_since(cursor)[0] == []


# --------------------------------------------------------------------------- change feed


def wait_change(store: PostgresStore, token: object, timeout: float = 10.0) -> object:
    deadline = time.monotonic() + timeout
    while (now := store.change_token()) == token:
        assert time.monotonic() < deadline, "the change token did not move"
        time.sleep(0.01)
    return now


def test_change_token_is_driven_by_notifications(pg_url: str) -> None:
    with PostgresStore(pg_url) as reader, open_store(pg_url) as writer:
        token = reader.change_token()
        for _ in range(50):   # quiet database: the token stays, with no query per call
            assert reader.change_token() == token
        (e,) = writer.add_experiments([spec()])
        token = wait_change(reader, token)
        lease = writer.claim_next("w").lease
        assert lease is not None
        token = wait_change(reader, token)
        writer.flush(lease, [("train/loss", 1, 1.0, 1.0)])          # a metric flush notifies too
        token = wait_change(reader, token)
        writer.register_worker("w", "box", 1, "cpu")
        token = wait_change(reader, token)
        assert reader.change_token() == token and e.id == 1


def terminate(url: str, pid: int) -> None:
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))


def test_change_token_moves_after_the_listener_is_lost_and_settles_again(pg_url: str) -> None:
    with PostgresStore(pg_url) as reader, open_store(pg_url) as writer:
        token = reader.change_token()
        assert reader._listen is not None
        terminate(pg_url, reader._listen.info.backend_pid)
        # Lost notifications: every call reports a change until the listener is back, then one
        # more change (re-read: what was committed meanwhile was never announced) and quiet again.
        writer.log_event(None, "info", "while the listener was down")
        token = wait_change(reader, token)
        deadline = time.monotonic() + 10
        while reader.change_token() != reader.change_token():
            assert time.monotonic() < deadline, "the listener did not come back"
            time.sleep(0.2)
        token = reader.change_token()
        writer.log_event(None, "info", "after")
        wait_change(reader, token)


def test_the_dashboard_poller_reads_again_after_losing_its_connections(pg_url: str) -> None:
    from optical_tui.poller import Poller

    with open_store(pg_url) as writer:
        (e,) = writer.add_experiments([spec()])
        lease = writer.claim_next("w").lease
        assert lease is not None
        poller = Poller(pg_url)
        try:
            assert poller.poll() is not None                      # first poll: cursors at the end
            store = poller.store
            assert isinstance(store, PostgresStore) and store._listen is not None
            writer.flush(lease, [("train/loss", 1, 1.0, 1.0)])
            for pid in (store._listen.info.backend_pid, store._conn.info.backend_pid):
                terminate(pg_url, pid)                            # the server restarted, say
            with pytest.raises(StoreError, match="lost the connection"):
                poller.poll()
            result = poller.poll()                               # reconnects, reads what it missed
            assert result is not None
            assert [(m.experiment_id, m.step) for m in result.metrics] == [(e.id, 1)]
            assert poller.poll() is None and poller.poll() is None   # and is quiet again
        finally:
            poller.close()


def test_a_lost_connection_is_one_store_error_then_reopened(pg_url: str) -> None:
    password = psycopg.conninfo.conninfo_to_dict(pg_url)["password"]
    with PostgresStore(pg_url) as store:
        store.add_experiments([spec()])
        terminate(pg_url, store._conn.info.backend_pid)
        with pytest.raises(StoreError, match="lost the connection") as err:
            store.list_experiments()
        assert password not in str(err.value) and "\n" not in str(err.value)
        assert [e.id for e in store.list_experiments()] == [1]   # the next call reconnects


# --------------------------------------------------------------------------- locks and clocks


STOPPED_HOLDER = r"""
import os, signal, sys
from engine.store.postgres import PostgresStore
store = PostgresStore(sys.argv[1], idle_in_transaction_timeout_s=float(sys.argv[3]))
conn = store._conn
conn.execute("BEGIN")
conn.execute("SELECT id FROM experiments WHERE id = %s FOR UPDATE", (int(sys.argv[2]),))
print("locked", flush=True)
os.kill(os.getpid(), signal.SIGSTOP)   # stopped inside the transaction, like a paused worker
"""


def test_a_process_stopped_inside_a_transaction_blocks_no_claim_and_is_cut_off(pg_url: str) -> None:
    with open_store(pg_url) as store:
        first, second = store.add_experiments([spec(1, priority=5), spec(2)])
    # The holder's idle timeout must outlast the checks below until the "locked" one: 2 s was
    # once too short on a saturated machine (connecting alone took most of it), so 6 s.
    proc = subprocess.Popen([sys.executable, "-c", STOPPED_HOLDER, pg_url, str(first.id), "6"],
                            cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        with PostgresStore(pg_url, lock_timeout_s=0.3) as other:
            # SKIP LOCKED: the claim takes the next row at once instead of waiting.
            claimed = other.claim_next("w2")
            assert claimed is not None and claimed.id == second.id
            assert other.requeue_stale(0) == [second.id]   # the reaper skips the held row too
            # A plain write of the held row waits for the lock, then gives up: one StoreError.
            with pytest.raises(StoreError, match="locked"):
                other.request_cancel([first.id])
            assert other.get(first.id).status == Status.QUEUED
            # idle_in_transaction_session_timeout ends the stopped session and frees the row.
            deadline = time.monotonic() + 30
            while True:
                try:
                    other.request_cancel([first.id])
                    break
                except StoreError:
                    assert time.monotonic() < deadline, "the stopped session kept its lock"
                    time.sleep(0.5)
            assert other.get(first.id).status == Status.CANCELLED
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
        proc.wait(timeout=30)


def test_store_sessions_set_their_timeouts(pg_url: str) -> None:
    # Every store session, a worker's included: a stopped process cannot hold a row lock for
    # longer than the idle timeout (below the default 60 s lease), nobody waits on a lock forever.
    with PostgresStore(pg_url) as store:
        settings = {}
        for name in ("idle_in_transaction_session_timeout", "lock_timeout"):
            row = store._conn.execute(f"SHOW {name}").fetchone()
            assert row is not None
            settings[name] = row[name]
        assert settings == {"idle_in_transaction_session_timeout": "30s", "lock_timeout": "30s"}


def test_leases_use_the_server_clock_not_this_box(pg_url: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT extract(epoch FROM now())::float8").fetchone()
        assert row is not None
        server_now = row[0]
    # This box's clock runs an hour ahead: leases, heartbeats and claims must not care.
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3600)
    with open_store(pg_url) as store:
        (e,) = store.add_experiments([spec()])
        claimed = store.claim_next("w")
        assert claimed is not None and claimed.heartbeat_at is not None
        assert abs(claimed.heartbeat_at - server_now) < 60
        assert abs(e.created_at - server_now) < 60
        assert store.requeue_stale(60) == []
        assert store.heartbeat_ages()[e.id] < 60
        assert abs(store.clock() - server_now) < 60


# --------------------------------------------------------------------------- schema


def _open_and_report(url: str, start: Any, out: Any) -> None:
    start.wait(timeout=120)
    try:
        with PostgresStore(url) as store:
            out.put(("ok", store.migrated, store.schema_version()))
    except OpticalError as exc:  # reported to the test, which fails with it
        out.put(("error", str(exc), 0))


def test_processes_opening_a_fresh_database_together_migrate_it_once(pg_url: str) -> None:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    start = ctx.Barrier(4)
    procs = [ctx.Process(target=_open_and_report, args=(pg_url, start, out)) for _ in range(4)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert all(r[0] == "ok" for r in results), results
    assert sorted(r[1] for r in results) == [False, False, False, True]
    assert {r[2] for r in results} == {SCHEMA_VERSION}


def test_a_newer_schema_is_refused_and_left_alone(pg_url: str) -> None:
    open_store(pg_url).close()
    with psycopg.connect(pg_url) as conn:
        conn.execute("UPDATE meta SET value = %s WHERE key = 'schema_version'",
                     (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="newer than this optical-tui understands"):
        open_store(pg_url)
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        assert row is not None and row[0] == SCHEMA_VERSION + 1


def test_ids_come_from_sequences_and_are_never_reused(pg_url: str) -> None:
    with open_store(pg_url) as store:
        a, b = store.add_experiments([spec(1), spec(2)])
        store.remove([a.id, b.id])
        (c,) = store.add_experiments([spec(3)])
        assert c.id == b.id + 1
        assert store.check()["ok"]


def test_a_read_only_server_gives_a_store_error_and_writes_nothing(pg_url: str) -> None:
    with PostgresStore(pg_url) as store:
        store._conn.execute("SET default_transaction_read_only = on")   # as on a standby
        with pytest.raises(StoreError, match="accepts no writes"):
            store.add_experiments([spec()])
        assert store.list_experiments() == []


# --------------------------------------------------------------------------- opening


def test_bad_urls_and_unreachable_servers_are_one_clear_error(pg_server: PgServer,
                                                              pg_url: str) -> None:
    password = pg_server.password
    wrong = pg_url.replace(f":{password}@", ":not-the-password@")
    cases = {
        wrong: "wrong user name or password",
        pg_url.rsplit("/", 1)[0] + "/no_such_db": "create that database first",
        pg_url.rsplit("/", 1)[0]: "no database name",
        pg_url.rsplit("/", 1)[0] + "/": "no database name",
        f"postgresql://optical:{password}@127.0.0.1:1/x": "is the server running",
        "mysql://optical:secret@h/db": "unknown scheme",
    }
    for url, message in cases.items():
        with pytest.raises(StoreError, match=message) as err:
            open_store(url)
        text = str(err.value)
        assert "\n" not in text and password not in text and "not-the-password" not in text
        assert "secret" not in text


def test_two_stores_share_one_queue_and_the_server_clock(pg_url: str) -> None:
    # Two "boxes" (stores with different injected clock offsets): the lease is still judged by
    # the server's clock plus one shift, never by comparing two clients' clocks.
    with open_store(pg_url) as box_a, open_store(pg_url, clock=lambda: time.time() + 120) as box_b:
        (e,) = box_a.add_experiments([spec()])
        assert box_a.claim_next("a") is not None
        assert box_a.requeue_stale(60) == []
        assert box_b.requeue_stale(60) == [e.id]     # 120 s later, by the server's clock
        assert box_a.get(e.id).status == Status.QUEUED

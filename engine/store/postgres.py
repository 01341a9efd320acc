"""The PostgreSQL backend: one queue shared by many boxes (psycopg 3).

Same contract as engine/store/sqlite.py (engine/store/base.py says it in words; the commands
both carry out alike are in engine/store/sql_store.py); what differs, and why:

- Times come from the server's clock (`statement_timestamp()`), never the client's: boxes' clocks
  differ, and a lease compared across two clocks requeues too early or too late. The records
  still carry unix-epoch floats (double precision columns, so a copied study stays bit-equal).
- A claim is one `UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP LOCKED)`; the reaper skips locked
  rows too, so neither ever waits on a row another process holds.
- Every write of a run is fenced on experiment id + worker id + attempt inside its statement.
- A metric flush is one statement (fence + heartbeat + `unnest` insert `ON CONFLICT DO NOTHING`)
  whose commit alone is asynchronous (`synchronous_commit` off): a crash of the server may lose
  the last fraction of a second of points, which the run re-sends from its checkpoint. Claims,
  finishes, releases and every user command stay durable.
- Readers and the change feed: engine/store/pg_feed.py.
- Sessions end a transaction left idle (`idle_in_transaction_session_timeout`: a stopped process
  cannot hold a row lock) and stop waiting for a lock after `lock_timeout`
  (engine/store/pg_connect.py).
- Schema: versioned migrations recorded in a meta table, run under an advisory lock so two
  processes opening a fresh database together migrate it once (engine/store/postgres_schema.py).
  Identity columns never reuse ids.

Any psycopg error becomes a one-line `StoreError` naming the URL without its password; a lost
connection is reopened by the next call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import DictRow

from engine.errors import StoreError
from engine.statuses import EventKind, Status, WorkerStatus
from engine.store import pg_study, policy
from engine.store.base import PointRow
from engine.store.pg_connect import Session
from engine.store.pg_feed import ChangeFeed, TxCursor, since_query, since_rows
from engine.store.pg_study import SEQUENCE_LAST
from engine.store.postgres_schema import SCHEMA_VERSION, lit, migrate, stored_version
from engine.store.records import Event, Experiment, MetricPoint, RunLease, StudyExport
from engine.store.rows import (
    ID_TABLES,
    event_from_row,
    experiment_from_row,
    json_text,
    point_from_row,
)
from engine.store.sql_store import SqlStore

__all__ = ["PostgresStore", "TxCursor"]

Q, R = Status.QUEUED.value, Status.RUNNING.value  # bound as parameters where SQL allows it
_REAL_TIME = time.time

#: Session setting holding the test clock's offset (see PostgresStore); unset in production.
CLOCK_SHIFT = "optical.clock_shift"
#: "Now" for every time the store writes or compares: the server's clock, fixed per statement.
NOW = ("(extract(epoch FROM statement_timestamp())::float8"
       f" + COALESCE(NULLIF(current_setting('{CLOCK_SHIFT}', true), '')::float8, 0))")
FENCE = ("id = %(id)s AND status = %(running_status)s AND worker_id = %(worker)s "
         "AND attempts = %(attempt)s")
_INSERT_EVENT = "INSERT INTO events (experiment_id, time, kind, message) "


def _bound(values: Mapping[str, Any]) -> tuple[list[sql.Composable], list[Any]]:
    """Column values as SQL: policy.NOW is the server's clock, anything else a parameter."""
    marks: list[sql.Composable] = [sql.SQL(NOW) if v is policy.NOW else sql.Placeholder()
                                   for v in values.values()]
    return marks, [v for v in values.values() if v is not policy.NOW]


class PostgresStore(SqlStore["psycopg.Cursor[DictRow]"]):
    """A store on a PostgreSQL database given by URL (`postgresql://user:password@host:port/db`).

    `clock` exists for tests: the default (`time.time`) means the server's clock exactly. Any other
    clock shifts the server's clock by `clock() - time.time()` (a server-side session setting),
    so a test can move time forward and the lease is still compared on the server, by the
    server's clock; two boxes' clocks never meet.
    """

    MARK, SPREAD_LISTS, TRUE = "%s", False, "true"

    def __init__(self, url: str, *, clock: Callable[[], float] = time.time,
                 connect_timeout_s: float = 10.0, lock_timeout_s: float = 30.0,
                 idle_in_transaction_timeout_s: float = 30.0) -> None:
        # The idle timeout stays below the worker's lease (60 s by default): a process stopped
        # inside a transaction has its session ended, and its row locks released, before anyone
        # could call its run lost.
        self._session = Session(url, connect_timeout_s, lock_timeout_s,
                                idle_in_transaction_timeout_s)
        self.url = url
        self.location = self._session.location
        self._shift_source = None if clock is _REAL_TIME else clock
        self.clock = self._server_now
        self._session.check_url()
        self._feed = ChangeFeed(url, connect_timeout_s)
        #: Whether opening this store ran migrations (two processes opening a fresh database
        #: together: exactly one of them does).
        self.migrated = False
        self._conn = self._session.connect()
        try:
            self._migrate()
        except BaseException:
            self.close()
            raise

    @property
    def _listen(self) -> psycopg.Connection[Any] | None:
        """The change feed's LISTEN connection, while it is open."""
        return self._feed.listen

    # ----------------------------------------------------------------- connections

    def _live(self) -> psycopg.Connection[DictRow]:
        """The main connection, reopened if it was lost; with the test clock's offset applied."""
        if self._conn.closed:
            self._conn = self._session.connect()
        if self._shift_source is not None:
            shift = self._shift_source() - _REAL_TIME()
            try:
                self._conn.execute("SELECT set_config(%s, %s, false)", (CLOCK_SHIFT, repr(shift)))
            except psycopg.Error as exc:
                raise self._error(exc) from None
        return self._conn

    def _error(self, exc: psycopg.Error) -> StoreError:
        return self._session.error(exc, self._conn.closed)

    @contextmanager
    def _cursor(self) -> Iterator[psycopg.Cursor[DictRow]]:
        """A cursor for one autocommit statement (or several independent ones)."""
        conn = self._live()
        try:
            with conn.cursor() as cur:
                yield cur
        except psycopg.Error as exc:
            raise self._error(exc) from None

    @contextmanager
    def _tx(self) -> Iterator[psycopg.Cursor[DictRow]]:
        """A transaction: committed on success, rolled back on any exception (a LeaseLost or an
        InvalidTransition raised inside writes nothing)."""
        conn = self._live()
        try:
            with conn.transaction(), conn.cursor() as cur:
                yield cur
        except psycopg.Error as exc:
            raise self._error(exc) from None

    def _rows(self, query: str | sql.Composed,
              params: Sequence[Any] | dict[str, Any] = ()) -> list[DictRow]:
        with self._cursor() as cur:
            return cur.execute(query, params).fetchall()

    def _execute(self, c: psycopg.Cursor[DictRow], query: str, params: Sequence[Any]) -> int:
        c.execute(query, params)
        return c.rowcount

    def _server_now(self) -> float:
        return float(self._rows(f"SELECT {NOW} AS now")[0]["now"])

    def close(self) -> None:
        self._feed.close()
        conn = getattr(self, "_conn", None)
        if conn is not None:
            conn.close()

    # ----------------------------------------------------------------- schema and change feed

    def _migrate(self) -> None:
        with self._cursor() as cur:
            version = stored_version(cur)
        policy.refuse_newer_schema(self.location, version, SCHEMA_VERSION)
        if version == SCHEMA_VERSION:
            return
        with self._cursor() as cur:
            self.migrated = migrate(cur, self.location)

    def schema_version(self) -> int:
        with self._cursor() as cur:
            return stored_version(cur)

    def change_token(self) -> object:
        return self._feed.token()

    def check(self) -> dict[str, Any]:
        with self._cursor() as cur:
            counts = {s.value: 0 for s in Status}
            problems: list[str] = []
            for r in cur.execute("SELECT status, count(*) AS n FROM experiments "
                                 "GROUP BY status").fetchall():
                if r["status"] in counts:
                    counts[r["status"]] = r["n"]
                else:
                    problems.append(f"{r['n']} experiment(s) with unknown status {r['status']!r}")
            orphans = cur.execute("SELECT count(*) AS n FROM experiments "
                                  "WHERE status = %s AND worker_id IS NULL", (R,)).fetchone()
            if orphans and orphans["n"]:
                problems.append(f"{orphans['n']} running experiment(s) without a worker")
            # Ids must never be handed out twice: every identity sequence is past its table's ids.
            for table in ID_TABLES:
                query = sql.SQL(f"SELECT {SEQUENCE_LAST} AS seq, COALESCE(max(id), 0) AS top "
                                "FROM {}")
                row = cur.execute(query.format(sql.Identifier(table)), (table,)).fetchone()
                if row and row["seq"] < row["top"]:
                    problems.append(f"{table}: id sequence at {row['seq']} is behind the "
                                    f"highest id {row['top']}")
            server = cur.execute("SHOW server_version").fetchone()
            n_metrics = cur.execute("SELECT count(*) AS n FROM metrics").fetchone()
            n_events = cur.execute("SELECT count(*) AS n FROM events").fetchone()
            version = stored_version(cur)
        return {
            "backend": "postgresql",
            "location": self.location,
            "ok": not problems,
            "integrity": problems or ["ok"],
            "schema_version": version,
            "supported_schema_version": SCHEMA_VERSION,
            "server_version": server["server_version"] if server else "",
            "experiments": counts,
            "metrics": n_metrics["n"] if n_metrics else 0,
            "events": n_events["n"] if n_events else 0,
        }

    # ----------------------------------------------------------------- experiments

    def _insert(self, c: psycopg.Cursor[DictRow], values: Mapping[str, Any]) -> Experiment:
        marks, params = _bound(values)
        row = c.execute(sql.SQL("INSERT INTO experiments ({}) VALUES ({}) RETURNING *").format(
            sql.SQL(", ").join(map(sql.Identifier, values)), sql.SQL(", ").join(marks)),
            params).fetchone()
        assert row is not None
        return experiment_from_row(row)

    def _update(self, c: psycopg.Cursor[DictRow], exp_id: int,
                changes: Mapping[str, Any]) -> None:
        marks, params = _bound(changes)
        sets = sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(k), m)
                                  for k, m in zip(changes, marks))
        c.execute(sql.SQL("UPDATE experiments SET {} WHERE id = %s").format(sets),
                  [*params, exp_id])

    def _require(self, cur: psycopg.Cursor[DictRow], ids: Sequence[int]) -> dict[int, DictRow]:
        """The rows, locked (in id order, so two commands never deadlock), in the order asked."""
        found = {r["id"]: r for r in cur.execute(
            "SELECT * FROM experiments WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
            (list(ids),)).fetchall()}
        rows = {}
        for i in ids:
            if i not in found:
                raise policy.not_found(i)
            rows[i] = found[i]
        return rows

    def _retried_as(self, c: psycopg.Cursor[DictRow], exp_id: int) -> int | None:
        # The original's row lock is held: a concurrent retry of it waits, then sees this copy.
        row = c.execute("SELECT id FROM experiments WHERE retry_of = %s ORDER BY id LIMIT 1",
                        (exp_id,)).fetchone()
        return None if row is None else int(row["id"])

    def _delete(self, c: psycopg.Cursor[DictRow], ids: Sequence[int]) -> None:
        for table in ("metrics", "events", "experiments"):
            column = "id" if table == "experiments" else "experiment_id"
            c.execute(sql.SQL("DELETE FROM {} WHERE {} = ANY(%s)").format(
                sql.Identifier(table), sql.Identifier(column)), (list(ids),))

    # ----------------------------------------------------------------- a run's life

    def claim_next(self, worker_id: str, device: str = "",
                   skip: Collection[int] = ()) -> Experiment | None:
        with self._cursor() as cur:
            row = cur.execute(
                "WITH c AS (UPDATE experiments SET status = %(running_status)s, "
                "attempts = attempts + 1, "
                "worker_id = %(worker)s, device = %(device)s, "
                f"started_at = COALESCE(started_at, {NOW}), attempt_started_at = {NOW}, "
                f"attempt_start_step = step, heartbeat_at = {NOW} "
                "WHERE status = %(queued_status)s AND id = (SELECT id FROM experiments "
                f"WHERE status = {lit(Status.QUEUED)} AND id <> ALL(%(skip)s::bigint[]) "
                "ORDER BY priority DESC, id LIMIT 1 "
                "FOR UPDATE SKIP LOCKED) "
                "RETURNING *), "
                f"ev AS ({_INSERT_EVENT}SELECT id, {NOW}, %(kind)s, %(message)s FROM c) "
                "SELECT * FROM c",
                {"running_status": R, "queued_status": Q, "worker": worker_id, "device": device,
                 "skip": sorted(int(i) for i in skip), "kind": EventKind.CLAIMED.value,
                 "message": policy.claimed_message(worker_id, device)}).fetchone()
        return experiment_from_row(row) if row else None

    @staticmethod
    def _fence(lease: RunLease) -> dict[str, Any]:
        return {"id": lease.experiment_id, "running_status": R, "worker": lease.worker_id,
                "attempt": lease.attempt}

    def flush(self, lease: RunLease, metrics: Sequence[PointRow] = (), step: int | None = None,
              total: int | None = None) -> bool:
        # One statement, one round trip: the fence (no row: lease lost, nothing inserted), the
        # heartbeat and the points. synchronous_commit is read at commit time, so setting it for
        # this transaction inside the statement makes just this commit asynchronous.
        params = self._fence(lease) | {
            "step": step, "total": total,
            "keys": [k for k, _, _, _ in metrics], "steps": [int(s) for _, s, _, _ in metrics],
            "values": [float(v) for _, _, v, _ in metrics],
            "times": [float(t) for _, _, _, t in metrics]}
        with self._cursor() as cur:
            row = cur.execute(
                f"WITH fence AS (UPDATE experiments SET heartbeat_at = {NOW}, "
                "step = COALESCE(%(step)s::bigint, step), "
                "total_steps = COALESCE(%(total)s::bigint, total_steps) "
                f"WHERE {FENCE} RETURNING id, cancel_requested), "
                "points AS (INSERT INTO metrics (experiment_id, key, step, value, time) "
                "SELECT fence.id, p.key, p.step, p.value, p.time FROM fence, "
                "unnest(%(keys)s::text[], %(steps)s::bigint[], %(values)s::float8[], "
                "%(times)s::float8[]) "
                "WITH ORDINALITY AS p(key, step, value, time, n) ORDER BY p.n "
                "ON CONFLICT (experiment_id, key, step) DO NOTHING) "
                "SELECT cancel_requested, set_config('synchronous_commit', 'off', true) FROM fence",
                params).fetchone()
        if row is None:
            raise policy.lease_lost(lease)
        return bool(row["cancel_requested"])

    def set_provenance(self, lease: RunLease, provenance: dict[str, Any]) -> None:
        rows = self._rows(
            "UPDATE experiments SET provenance = %(provenance)s, "
            "code_version = COALESCE(%(code)s, code_version) "
            f"WHERE {FENCE} RETURNING id",
            self._fence(lease) | {"provenance": json_text(provenance),
                                  "code": provenance.get("code_version")})
        if not rows:
            raise policy.lease_lost(lease)

    def log_run_event(self, lease: RunLease, kind: str, message: str) -> None:
        # FOR SHARE: a concurrent requeue or finish of this row is waited for and the fence
        # re-checked against the row it left, so a stale writer inserts nothing.
        rows = self._rows(
            f"{_INSERT_EVENT}SELECT id, {NOW}, %(kind)s, %(message)s FROM experiments "
            f"WHERE {FENCE} FOR SHARE RETURNING id",
            self._fence(lease) | {"kind": str(kind), "message": message})
        if not rows:
            raise policy.lease_lost(lease)

    def finish(self, lease: RunLease, status: Status, error: str | None = None) -> None:
        t = policy.finish(status, error)
        rows = self._rows(
            f"WITH f AS (UPDATE experiments SET status = %(status)s, finished_at = {NOW}, "
            f"heartbeat_at = {NOW}, error = %(error)s WHERE {FENCE} RETURNING id) "
            f"{_INSERT_EVENT}SELECT id, {NOW}, %(kind)s, %(message)s FROM f RETURNING id",
            self._fence(lease) | {"status": t.changes["status"], "error": error,
                                  "kind": t.event.value, "message": t.message})
        if not rows:
            raise policy.lease_lost(lease)

    def _event(self, cur: psycopg.Cursor[DictRow], exp_id: int | None, kind: str,
               message: str) -> None:
        cur.execute(f"{_INSERT_EVENT}VALUES (%s, {NOW}, %s, %s)", (exp_id, str(kind), message))

    def _hold(self, c: psycopg.Cursor[DictRow], lease: RunLease) -> DictRow:
        row = c.execute(f"SELECT attempts, max_attempts FROM experiments WHERE {FENCE} "
                        "FOR UPDATE", self._fence(lease)).fetchone()
        if row is None:
            raise policy.lease_lost(lease)
        return row

    def heartbeat_ages(self) -> dict[int, float]:
        rows = self._rows(f"SELECT id, {NOW} - COALESCE(heartbeat_at, {NOW}) AS age "
                          "FROM experiments WHERE status = %s", (R,))
        return {r["id"]: r["age"] for r in rows}

    def _stale(self, c: psycopg.Cursor[DictRow], lease_s: float) -> list[DictRow]:
        # SKIP LOCKED: a row some process holds (mid-flush, or stopped inside a transaction
        # until its session is ended) is looked at on the next round, never waited for.
        return c.execute(
            "SELECT id, worker_id, attempts, max_attempts, cancel_requested, "
            f"{NOW} - heartbeat_at AS silent "
            f"FROM experiments WHERE status = %s AND heartbeat_at < {NOW} - %s::float8 "
            "ORDER BY id FOR UPDATE SKIP LOCKED", (R, lease_s)).fetchall()

    # ----------------------------------------------------------------- metrics and events

    def metrics(self, exp_id: int | None = None, prefix: str | None = None,
                keys: Sequence[str] | None = None) -> list[MetricPoint]:
        where: list[str] = []
        params: list[Any] = []
        if exp_id is not None:
            where.append("experiment_id = %s")
            params.append(exp_id)
        if prefix:
            where.append("starts_with(key, %s)")
            params.append(prefix)
        if keys is not None:
            where.append("key = ANY(%s)")
            params.append(list(keys))
        query = "SELECT id, experiment_id, key, step, value, time FROM metrics"
        query += (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
        return [point_from_row(r) for r in self._rows(query, params)]

    def _since(self, table: str, columns: str, cursor: object | None,
               everything: bool) -> tuple[list[DictRow], TxCursor]:
        query, params = since_query(table, columns, cursor, everything)
        return since_rows(self._rows(query, params), cursor, everything)

    def metrics_since(self, cursor: object | None) -> tuple[list[MetricPoint], object]:
        rows, new_cursor = self._since(
            "metrics", "t.id, t.experiment_id, t.key, t.step, t.value, t.time", cursor,
            everything=False)
        return [point_from_row(r) for r in rows], new_cursor

    def latest_metric(self, key: str) -> dict[int, float]:
        rows = self._rows("SELECT DISTINCT ON (experiment_id) experiment_id, value FROM metrics "
                          "WHERE key = %s ORDER BY experiment_id, step DESC", (key,))
        return {r["experiment_id"]: r["value"] for r in rows}

    def log_event(self, exp_id: int | None, kind: str, message: str) -> None:
        with self._cursor() as cur:
            self._event(cur, exp_id, kind, message)

    def events_since(self, cursor: object | None) -> tuple[list[Event], object]:
        rows, new_cursor = self._since("events", "t.id, t.experiment_id, t.time, t.kind, t.message",
                                       cursor, everything=True)
        return [event_from_row(r) for r in rows], new_cursor

    # ----------------------------------------------------------------- copying a study

    @contextmanager
    def export_study(self) -> Iterator[StudyExport]:
        with pg_study.export_study(self._live(), self._error) as study:
            yield study

    def import_study(self, study: StudyExport) -> dict[str, int]:
        with self._tx() as cur:
            return pg_study.import_study(cur, self.location, study)

    # ----------------------------------------------------------------- workers

    def register_worker(self, worker_id: str, host: str, pid: int, device: str,
                        log_path: str = "") -> None:
        with self._cursor() as cur:
            cur.execute(
                "WITH w AS (INSERT INTO workers (id, host, pid, device, started_at, heartbeat_at, "
                "experiment_id, status, stop_requested, log_path) "
                f"VALUES (%(id)s, %(host)s, %(pid)s, %(device)s, {NOW}, {NOW}, "
                "NULL, %(idle)s, false, %(log)s) "
                "ON CONFLICT (id) DO UPDATE SET host = EXCLUDED.host, "
                "pid = EXCLUDED.pid, device = EXCLUDED.device, started_at = EXCLUDED.started_at, "
                "heartbeat_at = EXCLUDED.heartbeat_at, experiment_id = NULL, "
                "status = EXCLUDED.status, "
                "stop_requested = false, log_path = EXCLUDED.log_path RETURNING id) "
                f"{_INSERT_EVENT}SELECT NULL, {NOW}, %(kind)s, %(message)s FROM w",
                {"id": worker_id, "host": host, "pid": pid, "device": device,
                 "idle": WorkerStatus.IDLE.value, "log": log_path, "kind": EventKind.WORKER.value,
                 "message": policy.worker_started_message(worker_id, host, device)})

    def worker_heartbeat(self, worker_id: str, experiment_id: int | None,
                         status: WorkerStatus) -> bool:
        # Like a metric flush, a heartbeat need not wait for the disk.
        rows = self._rows(
            f"UPDATE workers SET heartbeat_at = {NOW}, experiment_id = %s, status = %s "
            "WHERE id = %s "
            "RETURNING stop_requested, set_config('synchronous_commit', 'off', true)",
            (experiment_id, WorkerStatus(status).value, worker_id))
        return bool(rows and rows[0]["stop_requested"])

    def unregister_worker(self, worker_id: str) -> None:
        with self._cursor() as cur:
            cur.execute(
                "WITH w AS (UPDATE workers SET status = %s, experiment_id = NULL, "
                f"heartbeat_at = {NOW} WHERE id = %s) "
                f"{_INSERT_EVENT}VALUES (NULL, {NOW}, %s, %s)",
                (WorkerStatus.STOPPED.value, worker_id, EventKind.WORKER.value,
                 policy.worker_stopped_message(worker_id)))

    def reap_workers(self, silent_s: float) -> list[str]:
        with self._tx() as cur:
            gone, stopped = WorkerStatus.GONE.value, WorkerStatus.STOPPED.value
            rows = cur.execute(
                "UPDATE workers SET status = %s, experiment_id = NULL "
                f"WHERE status NOT IN (%s, %s) AND heartbeat_at < {NOW} - %s::float8 "
                f"RETURNING id, started_at, {NOW} - heartbeat_at AS silent",
                (gone, stopped, gone, silent_s)).fetchall()
            rows.sort(key=lambda r: r["started_at"])
            for r in rows:
                self._event(cur, None, EventKind.WORKER,
                            policy.worker_gone_message(r["id"], r["silent"]))
        return [r["id"] for r in rows]

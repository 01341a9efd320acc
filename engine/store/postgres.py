"""The PostgreSQL backend: one queue shared by many boxes (psycopg 3).

Same contract as engine/store/sqlite.py (engine/store/base.py says it in words); what differs, and why:

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
- Readers: ids are handed out at insert, not at commit, so "rows after my last id" can skip a row
  whose transaction commits late. Each metric and event row records its transaction id (xid8);
  a reader's cursor only moves past transactions that had finished when it read
  (`pg_snapshot_xmin`), and drops rows it already returned (`TxCursor`).
- Change feed: statement-level triggers `pg_notify`; `change_token()` drains a LISTEN connection
  without blocking, falls back to "always changed" (polling) while that connection is down, and
  changes after every reconnect (notifications sent meanwhile are lost).
- Sessions end a transaction left idle (`idle_in_transaction_session_timeout`: a stopped process
  cannot hold a row lock) and stop waiting for a lock after `lock_timeout`.
- Schema: versioned migrations recorded in a meta table, run under an advisory lock so two
  processes opening a fresh database together migrate it once. Identity columns never reuse ids.

Any psycopg error becomes a one-line `StoreError` naming the URL without its password; a lost
connection is reopened by the next call.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow, dict_row

from engine.errors import ExperimentNotFound, InvalidTransition, LeaseLost, StoreError
from engine.statuses import TERMINAL, EventKind, Status, WorkerStatus
from engine.store.base import (
    PointRow,
    Store,
    already_retried,
    check_cancellable,
    check_removable,
    check_retryable,
    release_outcome,
    worker_gone_message,
)
from engine.store.locations import redact
from engine.store.postgres_schema import CHANNEL, MIGRATION_LOCK, MIGRATIONS, SCHEMA_VERSION, lit
from engine.store.records import (
    Event,
    Experiment,
    MetricPoint,
    NewExperiment,
    RunLease,
    StudyExport,
    WorkerInfo,
)
from engine.store.rows import (
    EVENT_COLUMNS,
    EXPERIMENT_COLUMNS,
    ID_TABLES,
    METRIC_VALUE_COLUMNS,
    event_values,
    experiment_values,
    metric_values,
    refuse_non_empty,
    tags_of,
    tags_text,
)
from engine.tags import change_text, changed

Q, R = Status.QUEUED.value, Status.RUNNING.value  # bound as parameters where SQL allows it
_REAL_TIME = time.time

MIN_SERVER_VERSION = 130000
#: Session setting holding the test clock's offset (see PostgresStore); unset in production.
CLOCK_SHIFT = "optical.clock_shift"
#: "Now" for every time the store writes or compares: the server's clock, fixed per statement.
NOW = ("(extract(epoch FROM statement_timestamp())::float8"
       f" + COALESCE(NULLIF(current_setting('{CLOCK_SHIFT}', true), '')::float8, 0))")
#: The last id a table's identity sequence handed out (0 if none), for the table named by the
#: parameter.
SEQUENCE_LAST = ("COALESCE(pg_sequence_last_value(pg_get_serial_sequence(%s, 'id')::regclass), "
                 "0)")
FENCE = ("id = %(id)s AND status = %(running_status)s AND worker_id = %(worker)s "
         "AND attempts = %(attempt)s")



# --------------------------------------------------------------------------- rows and cursors


def _exp(d: DictRow) -> Experiment:
    return Experiment(
        id=d["id"], name=d["name"], ratio=d["ratio"], seed=d["seed"], priority=d["priority"],
        status=Status(d["status"]), config=json.loads(d["config"]), code_version=d["code_version"] or "",
        attempts=d["attempts"], max_attempts=d["max_attempts"], created_at=d["created_at"],
        started_at=d["started_at"], finished_at=d["finished_at"], heartbeat_at=d["heartbeat_at"],
        worker_id=d["worker_id"], cancel_requested=bool(d["cancel_requested"]), error=d["error"],
        step=d["step"] or 0, total_steps=d["total_steps"] or 0, device=d["device"],
        provenance=json.loads(d["provenance"] or "{}"), retry_of=d["retry_of"],
        factors=json.loads(d["factors"] or "{}"), attempt_started_at=d["attempt_started_at"],
        attempt_start_step=d["attempt_start_step"] or 0, tags=tags_of(d["tags"]),
        note=d["note"] or "",
    )


def _point(d: DictRow) -> MetricPoint:
    return MetricPoint(d["id"], d["experiment_id"], d["key"], d["step"], d["value"], d["time"])


def _event(d: DictRow) -> Event:
    return Event(d["id"], d["experiment_id"], d["time"], d["kind"], d["message"])


@dataclass(frozen=True)
class TxCursor:
    """Where an incremental reader stands: it has read every row of every transaction numbered
    below `xmin` (all had finished when it last read), and the rows in `seen` (from transactions
    at or above `xmin`, re-read next time because one of them might still commit).

    A writing transaction left open holds `xmin` back, and each read then re-reads the rows since
    it (dropping those in `seen`): slower, never wrong. This store's own sessions are ended after
    `idle_in_transaction_timeout_s` idle inside a transaction."""

    xmin: int
    seen: frozenset[int]


def _one_line(exc: BaseException, password: str | None) -> str:
    text = " ".join(part.strip() for part in str(exc).strip().splitlines() if part.strip())
    if password:  # libpq never echoes it; this makes sure, as written in the URL and decoded
        for form in (password, unquote(password)):
            text = text.replace(form, "***")
    return text or type(exc).__name__


# SQLSTATE → what the user can do about it.
_HINTS = {
    "55P03": "a row stayed locked past the lock timeout: another process holds it; retry",
    "53100": "the database server's disk is full",
    "25006": "the server accepts no writes (a standby, or default_transaction_read_only)",
    "53300": "too many connections: raise max_connections or run fewer workers and dashboards",
    "42501": "the database role lacks a privilege on the experiment tables",
    "40001": "a concurrent update conflicted; retry",
    "40P01": "a deadlock between two writers; retry",
    "57014": "the statement was cancelled (statement_timeout or an administrator)",
    "57P01": "the server is shutting down; retry once it is back",
}


class PostgresStore(Store):
    """A store on a PostgreSQL database given by URL (`postgresql://user:password@host:port/db`).

    `clock` exists for tests: the default (`time.time`) means the server's clock exactly. Any other
    clock shifts the server's clock by `clock() - time.time()` (a server-side session setting),
    so a test can move time forward and the lease is still compared on the server, by the
    server's clock; two boxes' clocks never meet.
    """

    def __init__(self, url: str, *, clock: Callable[[], float] = time.time, connect_timeout_s: float = 10.0,
                 lock_timeout_s: float = 30.0, idle_in_transaction_timeout_s: float = 30.0) -> None:
        self.url = url
        self.location = redact(url)
        self._password = urlsplit(url).password
        self._shift_source = None if clock is _REAL_TIME else clock
        self.clock = self._server_now
        self.connect_timeout_s = connect_timeout_s
        self.lock_timeout_s = lock_timeout_s
        # Below the worker's lease (60 s by default): a process stopped inside a transaction has
        # its session ended, and its row locks released, before anyone could call its run lost.
        self.idle_in_transaction_timeout_s = idle_in_transaction_timeout_s
        self._check_url()
        self._listen: psycopg.Connection[Any] | None = None
        self._listen_retry_at = 0.0
        self._generation = 0       # bumped on every (re)connect of the listener: changes the token
        self._notified = 0
        self._polls = 0
        #: Whether opening this store ran migrations (two processes opening a fresh database
        #: together: exactly one of them does).
        self.migrated = False
        self._conn = self._connect()
        try:
            self._migrate()
        except BaseException:
            self.close()
            raise

    # ----------------------------------------------------------------- connections

    def _check_url(self) -> None:
        parts = urlsplit(self.url)
        try:
            info = conninfo_to_dict(self.url)
        except psycopg.Error as exc:
            raise StoreError(f"--db {self.location}: not a valid PostgreSQL URL "
                             f"({_one_line(exc, self._password)})") from None
        # libpq's own sources may name the database: a service file entry (?service=NAME or
        # PGSERVICE) or PGDATABASE. The password may come from ~/.pgpass or PGPASSFILE too.
        named_elsewhere = info.get("service") or os.environ.get("PGSERVICE") or os.environ.get("PGDATABASE")
        if not unquote(parts.path.lstrip("/")) and not info.get("dbname") and not named_elsewhere:
            raise StoreError(f"--db {self.location}: no database name; write "
                             "postgresql://user:password@host:port/dbname (or ?service=NAME)")

    def _connect(self) -> psycopg.Connection[DictRow]:
        info = conninfo_to_dict(self.url)
        extra: dict[str, Any] = {}
        if "connect_timeout" not in info:
            extra["connect_timeout"] = max(1, round(self.connect_timeout_s))
        if "application_name" not in info:
            extra["application_name"] = "optical-tui"
        try:
            conn = psycopg.connect(self.url, autocommit=True, row_factory=dict_row, **extra)
        except psycopg.Error as exc:
            raise StoreError(self._connect_message(exc)) from None
        if conn.info.server_version < MIN_SERVER_VERSION:  # xid8 and pg_current_xact_id() came in 13
            conn.close()
            major = conn.info.server_version // 10000
            raise StoreError(f"--db {self.location}: PostgreSQL {major} is too old; optical-tui needs "
                             "PostgreSQL 13 or newer")
        try:
            setup = sql.SQL("SET idle_in_transaction_session_timeout = {}; SET lock_timeout = {}")
            conn.execute(setup.format(sql.Literal(f"{round(self.idle_in_transaction_timeout_s * 1000)}ms"),
                                      sql.Literal(f"{round(self.lock_timeout_s * 1000)}ms")))
        except psycopg.Error as exc:
            conn.close()
            raise StoreError(f"--db {self.location}: {_one_line(exc, self._password)}") from None
        return conn

    def _connect_message(self, exc: psycopg.Error) -> str:
        text = _one_line(exc, self._password)
        low = text.lower()
        if "no password supplied" in low:
            hint = "no password: put it in the URL, in ~/.pgpass (or PGPASSFILE) or in a service file"
        elif "password authentication failed" in low:
            hint = "wrong user name or password"
        elif "database" in low and "does not exist" in low:
            hint = "create that database first, or fix its name in the URL"
        elif "role" in low and "does not exist" in low:
            hint = "no such user on that server"
        elif any(s in low for s in ("refused", "timeout", "timed out", "could not translate", "no route",
                                    "could not connect", "network is unreachable", "name or service")):
            hint = "is the server running, and reachable from this box on that host and port?"
        else:
            hint = ""
        return f"--db {self.location}: cannot connect ({text})" + (f": {hint}" if hint else "")

    def _live(self) -> psycopg.Connection[DictRow]:
        """The main connection, reopened if it was lost; with the test clock's offset applied."""
        if self._conn.closed:
            self._conn = self._connect()
        if self._shift_source is not None:
            shift = self._shift_source() - _REAL_TIME()
            try:
                self._conn.execute("SELECT set_config(%s, %s, false)", (CLOCK_SHIFT, repr(shift)))
            except psycopg.Error as exc:
                raise self._error(exc) from None
        return self._conn

    def _error(self, exc: psycopg.Error) -> StoreError:
        text = _one_line(exc, self._password)
        if self._conn.closed or isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None:
            return StoreError(f"{self.location}: lost the connection to the database server ({text}); "
                              "it is reopened on the next try")
        hint = _HINTS.get(exc.sqlstate or "")
        return StoreError(f"{self.location}: {text}" + (f" ({hint})" if hint else ""))

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

    def _rows(self, query: str | sql.Composed, params: Sequence[Any] | dict[str, Any] = ()) -> list[DictRow]:
        with self._cursor() as cur:
            return cur.execute(query, params).fetchall()

    def _server_now(self) -> float:
        return float(self._rows(f"SELECT {NOW} AS now")[0]["now"])

    def close(self) -> None:
        for conn in (self._listen, getattr(self, "_conn", None)):
            if conn is not None:
                conn.close()
        self._listen = None

    # ----------------------------------------------------------------- schema

    def _stored_version(self, cur: psycopg.Cursor[DictRow]) -> int:
        present = cur.execute("SELECT to_regclass('meta') IS NOT NULL AS present").fetchone()
        if not (present and present["present"]):
            return 0
        row = cur.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row["value"]) if row else 0

    def _refuse_newer(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.location}: schema version {version} is newer than this optical-tui "
                             f"understands ({SCHEMA_VERSION}); upgrade optical-tui")

    def _migrate(self) -> None:
        with self._cursor() as cur:
            version = self._stored_version(cur)
        self._refuse_newer(version)
        if version == SCHEMA_VERSION:
            return
        # Two processes opening a fresh database together: the second waits for the lock, then
        # finds the schema current. A session lock taken before the transaction, not
        # pg_advisory_xact_lock inside it: a transaction that was already open while it waited
        # keeps its cached view of the catalog (a lock on no table processes no invalidations),
        # so it would not see the tables the first process created, and would create them again
        # (tests/test_store_postgres.py caught exactly that). A transaction begun after the lock
        # sees them. The session lock goes with the session if this process dies.
        with self._cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
            try:
                with self._conn.transaction():
                    version = self._stored_version(cur)
                    self._refuse_newer(version)
                    for i in range(version, SCHEMA_VERSION):
                        cur.execute(MIGRATIONS[i])
                        cur.execute("INSERT INTO meta (key, value) VALUES ('schema_version', %s) "
                                    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", (i + 1,))
                    self.migrated = version < SCHEMA_VERSION
            finally:
                if not self._conn.closed:
                    cur.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))

    def schema_version(self) -> int:
        with self._cursor() as cur:
            return self._stored_version(cur)

    # ----------------------------------------------------------------- change feed

    def _listener(self) -> psycopg.Connection[Any] | None:
        if self._listen is not None and not self._listen.closed:
            return self._listen
        if time.monotonic() < self._listen_retry_at:
            return None
        conn = None
        try:
            conn = psycopg.connect(self.url, autocommit=True, application_name="optical-tui listener",
                                   connect_timeout=max(1, round(self.connect_timeout_s)))
            conn.execute(f"LISTEN {CHANNEL}")
        except psycopg.Error:
            if conn is not None:
                conn.close()
            self._listen_retry_at = time.monotonic() + 2.0   # poll meanwhile; try again in 2 s
            return None
        self._listen = conn
        self._generation += 1   # anything committed while we did not listen: read again
        return conn

    def change_token(self) -> object:
        for _ in range(2):   # a listener found dead is reopened at once (a new generation)
            listener = self._listener()
            if listener is None:
                break
            try:
                for _ in listener.notifies(timeout=0):
                    self._notified += 1
                return (self._generation, self._notified)
            except psycopg.Error:
                listener.close()
                self._listen = None
        # Polling fallback while the LISTEN connection is down: report a change on every call.
        self._polls += 1
        return ("polling", self._polls)

    def check(self) -> dict[str, Any]:
        with self._cursor() as cur:
            counts = {s.value: 0 for s in Status}
            problems: list[str] = []
            for r in cur.execute("SELECT status, count(*) AS n FROM experiments GROUP BY status").fetchall():
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
                query = sql.SQL(f"SELECT {SEQUENCE_LAST} AS seq, COALESCE(max(id), 0) AS top FROM {{}}")
                row = cur.execute(query.format(sql.Identifier(table)), (table,)).fetchone()
                if row and row["seq"] < row["top"]:
                    problems.append(f"{table}: id sequence at {row['seq']} is behind the highest id "
                                    f"{row['top']}")
            server = cur.execute("SHOW server_version").fetchone()
            n_metrics = cur.execute("SELECT count(*) AS n FROM metrics").fetchone()
            n_events = cur.execute("SELECT count(*) AS n FROM events").fetchone()
            version = self._stored_version(cur)
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

    def add_experiments(self, specs: Iterable[NewExperiment]) -> list[Experiment]:
        out = []
        with self._tx() as cur:
            for s in specs:
                row = cur.execute(
                    "WITH e AS (INSERT INTO experiments (name, ratio, seed, priority, status, config, "
                    "code_version, max_attempts, created_at, retry_of, factors, tags) "
                    f"VALUES (%s, %s, %s, %s, %s, %s, %s, %s, {NOW}, %s, %s, %s) RETURNING *), "
                    "ev AS (INSERT INTO events (experiment_id, time, kind, message) "
                    f"SELECT id, {NOW}, %s, %s FROM e) "
                    "SELECT * FROM e",
                    (s.name, s.ratio, s.seed, s.priority, Q, json.dumps(s.config, sort_keys=True),
                     s.code_version, s.max_attempts, s.retry_of, json.dumps(s.factors, sort_keys=True),
                     tags_text(s.tags), EventKind.QUEUED.value,
                     f"queued {s.name!r} ratio {s.ratio} seed {s.seed}")).fetchone()
                assert row is not None
                out.append(_exp(row))
        return out

    def get(self, exp_id: int) -> Experiment:
        rows = self._rows("SELECT * FROM experiments WHERE id = %s", (exp_id,))
        if not rows:
            raise ExperimentNotFound(f"no experiment with id {exp_id}")
        return _exp(rows[0])

    def list_experiments(self, status: Status | Sequence[Status] | None = None,
                         ids: Sequence[int] | None = None, name: str | None = None) -> list[Experiment]:
        where: list[str] = []
        params: list[Any] = []
        if status is not None:
            statuses = [Status(status)] if isinstance(status, str) else [Status(s) for s in status]
            where.append("status = ANY(%s)")
            params.append([s.value for s in statuses])
        if ids is not None:
            where.append("id = ANY(%s)")
            params.append(list(ids))
        if name is not None:
            where.append("name = %s")
            params.append(name)
        query = "SELECT * FROM experiments" + (" WHERE " + " AND ".join(where) if where else "")
        return [_exp(r) for r in self._rows(query + " ORDER BY id", params)]

    def _require(self, cur: psycopg.Cursor[DictRow], ids: Sequence[int]) -> dict[int, DictRow]:
        """The rows, locked (in id order, so two commands never deadlock), in the order asked."""
        found = {r["id"]: r for r in cur.execute(
            "SELECT * FROM experiments WHERE id = ANY(%s) ORDER BY id FOR UPDATE", (list(ids),)).fetchall()}
        rows = {}
        for i in ids:
            if i not in found:
                raise ExperimentNotFound(f"no experiment with id {i}")
            rows[i] = found[i]
        return rows

    def claim_next(self, worker_id: str, device: str = "",
                   skip: Collection[int] = ()) -> Experiment | None:
        with self._cursor() as cur:
            row = cur.execute(
                "WITH c AS (UPDATE experiments SET status = %(running_status)s, attempts = attempts + 1, "
                "worker_id = %(worker)s, device = %(device)s, "
                f"started_at = COALESCE(started_at, {NOW}), attempt_started_at = {NOW}, "
                f"attempt_start_step = step, heartbeat_at = {NOW} "
                "WHERE status = %(queued_status)s AND id = (SELECT id FROM experiments "
                f"WHERE status = {lit(Status.QUEUED)} AND id <> ALL(%(skip)s::bigint[]) "
                "ORDER BY priority DESC, id LIMIT 1 "
                "FOR UPDATE SKIP LOCKED) "
                "RETURNING *), "
                f"ev AS (INSERT INTO events (experiment_id, time, kind, message) SELECT id, {NOW}, %(kind)s, "
                "%(message)s FROM c) "
                "SELECT * FROM c",
                {"running_status": R, "queued_status": Q, "worker": worker_id, "device": device,
                 "skip": sorted(int(i) for i in skip), "kind": EventKind.CLAIMED.value,
                 "message": f"claimed by {worker_id} on {device or '?'}"}).fetchone()
        return _exp(row) if row else None

    @staticmethod
    def _fence(lease: RunLease) -> dict[str, Any]:
        return {"id": lease.experiment_id, "running_status": R, "worker": lease.worker_id,
                "attempt": lease.attempt}

    @staticmethod
    def _lost(lease: RunLease) -> LeaseLost:
        return LeaseLost(f"experiment {lease.experiment_id} is no longer held by worker "
                         f"{lease.worker_id} (attempt {lease.attempt})")

    def flush(self, lease: RunLease, metrics: Sequence[PointRow] = (), step: int | None = None,
              total: int | None = None) -> bool:
        # One statement, one round trip: the fence (no row: lease lost, nothing inserted), the
        # heartbeat and the points. synchronous_commit is read at commit time, so setting it for
        # this transaction inside the statement makes just this commit asynchronous.
        params = self._fence(lease) | {
            "step": step, "total": total,
            "keys": [k for k, _, _, _ in metrics], "steps": [int(s) for _, s, _, _ in metrics],
            "values": [float(v) for _, _, v, _ in metrics], "times": [float(t) for _, _, _, t in metrics]}
        with self._cursor() as cur:
            row = cur.execute(
                f"WITH fence AS (UPDATE experiments SET heartbeat_at = {NOW}, "
                "step = COALESCE(%(step)s::bigint, step), "
                "total_steps = COALESCE(%(total)s::bigint, total_steps) "
                f"WHERE {FENCE} RETURNING id, cancel_requested), "
                "points AS (INSERT INTO metrics (experiment_id, key, step, value, time) "
                "SELECT fence.id, p.key, p.step, p.value, p.time FROM fence, "
                "unnest(%(keys)s::text[], %(steps)s::bigint[], %(values)s::float8[], %(times)s::float8[]) "
                "WITH ORDINALITY AS p(key, step, value, time, n) ORDER BY p.n "
                "ON CONFLICT (experiment_id, key, step) DO NOTHING) "
                "SELECT cancel_requested, set_config('synchronous_commit', 'off', true) FROM fence",
                params).fetchone()
        if row is None:
            raise self._lost(lease)
        return bool(row["cancel_requested"])

    def set_provenance(self, lease: RunLease, provenance: dict[str, Any]) -> None:
        rows = self._rows(
            "UPDATE experiments SET provenance = %(provenance)s, "
            "code_version = COALESCE(%(code)s, code_version) "
            f"WHERE {FENCE} RETURNING id",
            self._fence(lease) | {"provenance": json.dumps(provenance, sort_keys=True),
                                  "code": provenance.get("code_version")})
        if not rows:
            raise self._lost(lease)

    def log_run_event(self, lease: RunLease, kind: str, message: str) -> None:
        # FOR SHARE: a concurrent requeue or finish of this row is waited for and the fence
        # re-checked against the row it left, so a stale writer inserts nothing.
        rows = self._rows(
            f"INSERT INTO events (experiment_id, time, kind, message) "
            f"SELECT id, {NOW}, %(kind)s, %(message)s FROM experiments WHERE {FENCE} FOR SHARE RETURNING id",
            self._fence(lease) | {"kind": str(kind), "message": message})
        if not rows:
            raise self._lost(lease)

    def finish(self, lease: RunLease, status: Status, error: str | None = None) -> None:
        if status not in TERMINAL:
            raise InvalidTransition(f"finish: {status!r} is not a terminal status")
        status = Status(status)
        message = error.strip().splitlines()[-1] if error and error.strip() else status.value
        rows = self._rows(
            f"WITH f AS (UPDATE experiments SET status = %(status)s, finished_at = {NOW}, "
            f"heartbeat_at = {NOW}, error = %(error)s WHERE {FENCE} RETURNING id) "
            f"INSERT INTO events (experiment_id, time, kind, message) "
            f"SELECT id, {NOW}, %(kind)s, %(message)s FROM f RETURNING id",
            self._fence(lease) | {"status": status.value, "error": error,
                                  "kind": EventKind(status.value).value, "message": message})
        if not rows:
            raise self._lost(lease)

    def _event(self, cur: psycopg.Cursor[DictRow], exp_id: int | None, kind: str, message: str) -> None:
        cur.execute(f"INSERT INTO events (experiment_id, time, kind, message) VALUES (%s, {NOW}, %s, %s)",
                    (exp_id, str(kind), message))

    def release(self, lease: RunLease, reason: str = "released", *, count_attempt: bool = False) -> None:
        with self._tx() as cur:
            row = cur.execute(f"SELECT attempts, max_attempts FROM experiments WHERE {FENCE} FOR UPDATE",
                              self._fence(lease)).fetchone()
            if row is None:
                raise self._lost(lease)
            status, msg = release_outcome(reason, row["attempts"], row["max_attempts"],
                                          count_attempt)
            if status == Status.FAILED:
                cur.execute(f"UPDATE experiments SET status = %s, finished_at = {NOW}, error = %s, "
                            "worker_id = NULL WHERE id = %s", (Status.FAILED.value, msg, lease.experiment_id))
                self._event(cur, lease.experiment_id, EventKind.FAILED, msg)
                return
            # A drain hands the attempt back; a crash keeps it counted.
            cur.execute("UPDATE experiments SET status = %s, worker_id = NULL, attempts = "
                        "CASE WHEN %s THEN attempts ELSE GREATEST(attempts - 1, 0) END WHERE id = %s",
                        (Q, count_attempt, lease.experiment_id))
            self._event(cur, lease.experiment_id, EventKind.REQUEUED, msg)

    def heartbeat_ages(self) -> dict[int, float]:
        rows = self._rows(f"SELECT id, {NOW} - COALESCE(heartbeat_at, {NOW}) AS age FROM experiments "
                          "WHERE status = %s", (R,))
        return {r["id"]: r["age"] for r in rows}

    def requeue_stale(self, lease_s: float) -> list[int]:
        touched = []
        with self._tx() as cur:
            # SKIP LOCKED: a row some process holds (mid-flush, or stopped inside a transaction
            # until its session is ended) is looked at on the next round, never waited for.
            rows = cur.execute(
                "SELECT id, worker_id, attempts, max_attempts, cancel_requested, "
                f"{NOW} - heartbeat_at AS silent "
                f"FROM experiments WHERE status = %s AND heartbeat_at < {NOW} - %s::float8 "
                "ORDER BY id FOR UPDATE SKIP LOCKED", (R, lease_s)).fetchall()
            for r in rows:
                if r["cancel_requested"]:
                    # The user asked to stop it; a lost worker does not change that.
                    msg = f"cancelled: its worker {r['worker_id']} was lost before the cancel took effect"
                    cur.execute(f"UPDATE experiments SET status = %s, finished_at = {NOW}, worker_id = NULL "
                                "WHERE id = %s", (Status.CANCELLED.value, r["id"]))
                    self._event(cur, r["id"], EventKind.CANCELLED, msg)
                elif r["attempts"] >= r["max_attempts"]:
                    msg = f"lost: no heartbeat for {r['silent']:.0f}s after {r['attempts']} attempt(s)"
                    cur.execute(f"UPDATE experiments SET status = %s, finished_at = {NOW}, error = %s, "
                                "worker_id = NULL WHERE id = %s", (Status.FAILED.value, msg, r["id"]))
                    self._event(cur, r["id"], EventKind.FAILED, msg)
                else:
                    cur.execute("UPDATE experiments SET status = %s, worker_id = NULL WHERE id = %s",
                                (Q, r["id"]))
                    msg = f"lost worker {r['worker_id']} (no heartbeat for {r['silent']:.0f}s); requeued"
                    self._event(cur, r["id"], EventKind.REQUEUED, msg)
                touched.append(r["id"])
        return touched

    def request_cancel(self, ids: Sequence[int]) -> list[Experiment]:
        with self._tx() as cur:
            rows = self._require(cur, ids)
            check_cancellable(rows)
            for i, r in rows.items():
                if r["status"] == Q:
                    cur.execute(f"UPDATE experiments SET status = %s, finished_at = {NOW} WHERE id = %s",
                                (Status.CANCELLED.value, i))
                    self._event(cur, i, EventKind.CANCELLED, "cancelled while queued")
                else:
                    cur.execute("UPDATE experiments SET cancel_requested = true WHERE id = %s", (i,))
                    self._event(cur, i, EventKind.CANCEL_REQUESTED, "cancel requested")
        return self.list_experiments(ids=list(ids))

    def retry(self, ids: Sequence[int]) -> list[Experiment]:
        with self._tx() as cur:
            rows = self._require(cur, ids)
            check_retryable(rows)
            for i in rows:
                # The original's row lock is held: a concurrent retry of it waits, then sees this copy.
                again = cur.execute("SELECT id FROM experiments WHERE retry_of = %s ORDER BY id LIMIT 1",
                                    (i,)).fetchone()
                if again is not None:
                    raise already_retried(i, again["id"])
            return self._copy(cur, rows, retry=True)

    def clone(self, ids: Sequence[int]) -> list[Experiment]:
        with self._tx() as cur:
            return self._copy(cur, self._require(cur, ids), retry=False)

    def _copy(self, cur: psycopg.Cursor[DictRow], rows: dict[int, DictRow], retry: bool) -> list[Experiment]:
        out = []
        for i, r in rows.items():
            row = cur.execute(
                "INSERT INTO experiments (name, ratio, seed, priority, status, config, code_version, "
                "max_attempts, created_at, retry_of, factors, tags) "
                f"VALUES (%s, %s, %s, %s, %s, %s, %s, %s, {NOW}, %s, %s, %s) RETURNING *",
                (r["name"], r["ratio"], r["seed"], r["priority"], Q, r["config"], r["code_version"] or "",
                 r["max_attempts"], i if retry else None, r["factors"], r["tags"])).fetchone()
            assert row is not None
            self._event(cur, row["id"], EventKind.QUEUED, f"{'retry' if retry else 'clone'} of #{i}")
            out.append(_exp(row))
        return out

    def retag(self, ids: Sequence[int], add: Sequence[str] = (),
              remove: Sequence[str] = ()) -> list[Experiment]:
        with self._tx() as cur:
            # _require locks the rows: two taggers never lose each other's update.
            for i, r in self._require(cur, ids).items():
                before = tags_of(r["tags"])
                after = changed(before, add, remove)
                if after != before:
                    cur.execute("UPDATE experiments SET tags = %s WHERE id = %s",
                                (tags_text(after), i))
                    self._event(cur, i, EventKind.INFO, "tags " + change_text(
                        [t for t in after if t not in before],
                        [t for t in before if t not in after]))
        return self.list_experiments(ids=list(ids))

    def annotate(self, exp_id: int, note: str) -> Experiment:
        with self._tx() as cur:
            self._require(cur, [exp_id])
            cur.execute("UPDATE experiments SET note = %s WHERE id = %s", (note, exp_id))
            self._event(cur, exp_id, EventKind.INFO, f"note: {note}" if note else "note cleared")
        return self.get(exp_id)

    def remove(self, ids: Sequence[int]) -> int:
        with self._tx() as cur:
            rows = self._require(cur, ids)
            check_removable(rows)
            for table in ("metrics", "events", "experiments"):
                column = "id" if table == "experiments" else "experiment_id"
                cur.execute(sql.SQL("DELETE FROM {} WHERE {} = ANY(%s)").format(
                    sql.Identifier(table), sql.Identifier(column)), (list(ids),))
        return len(ids)

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
        return [_point(r) for r in self._rows(query, params)]

    def _since(self, table: str, columns: str, cursor: object | None,
               everything: bool) -> tuple[list[DictRow], TxCursor]:
        """Rows committed since `cursor`, read in one statement (one snapshot) with that snapshot's
        xmin: every transaction numbered below it had finished, committed or not, when we read."""
        if cursor is not None and not isinstance(cursor, TxCursor):
            raise TypeError(f"not a PostgreSQL cursor: {cursor!r}")
        if cursor is not None:
            join, params = "t.tx >= %s::xid8", [str(cursor.xmin)]
        elif everything:
            join, params = "true", []
        else:
            join, params = "t.tx >= s.xmin", []
        rows = self._rows(
            sql.SQL(f"SELECT s.xmin::text AS snapshot_xmin, t.tx::text AS row_tx, {columns} "
                    "FROM (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin) s "
                    f"LEFT JOIN {{}} t ON {join} ORDER BY t.id").format(sql.Identifier(table)), params)
        xmin = int(rows[0]["snapshot_xmin"])
        present = [r for r in rows if r["id"] is not None]
        seen = frozenset(r["id"] for r in present if int(r["row_tx"]) >= xmin)
        if cursor is None and not everything:
            return [], TxCursor(xmin, seen)   # a new reader starts at the end
        old = cursor.seen if cursor is not None else frozenset()
        return [r for r in present if r["id"] not in old], TxCursor(xmin, seen)

    def metrics_since(self, cursor: object | None) -> tuple[list[MetricPoint], object]:
        rows, new_cursor = self._since("metrics", "t.id, t.experiment_id, t.key, t.step, t.value, t.time",
                                       cursor, everything=False)
        return [_point(r) for r in rows], new_cursor

    def latest_metric(self, key: str) -> dict[int, float]:
        rows = self._rows("SELECT DISTINCT ON (experiment_id) experiment_id, value FROM metrics "
                          "WHERE key = %s ORDER BY experiment_id, step DESC", (key,))
        return {r["experiment_id"]: r["value"] for r in rows}

    def log_event(self, exp_id: int | None, kind: str, message: str) -> None:
        with self._cursor() as cur:
            self._event(cur, exp_id, kind, message)

    def events(self, exp_id: int | None = None, after_id: int = 0) -> list[Event]:
        if exp_id is None:
            rows = self._rows("SELECT * FROM events WHERE id > %s ORDER BY id", (after_id,))
        else:
            rows = self._rows("SELECT * FROM events WHERE experiment_id = %s AND id > %s ORDER BY id",
                              (exp_id, after_id))
        return [_event(r) for r in rows]

    def events_since(self, cursor: object | None) -> tuple[list[Event], object]:
        rows, new_cursor = self._since("events", "t.id, t.experiment_id, t.time, t.kind, t.message",
                                       cursor, everything=True)
        return [_event(r) for r in rows], new_cursor

    # ----------------------------------------------------------------- copying a study

    def _last_ids(self, cur: psycopg.Cursor[DictRow]) -> dict[str, int]:
        out = {}
        for table in ID_TABLES:
            query = sql.SQL(f"SELECT GREATEST({SEQUENCE_LAST}, COALESCE(max(id), 0)) AS last FROM {{}}")
            row = cur.execute(query.format(sql.Identifier(table)), (table,)).fetchone()
            out[table] = int(row["last"]) if row else 0
        return out

    @contextmanager
    def export_study(self) -> Iterator[StudyExport]:
        conn = self._live()
        try:
            with conn.transaction():
                # One snapshot for the whole export; the copy may take a while between fetches.
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                conn.execute("SET LOCAL idle_in_transaction_session_timeout = 0")
                with conn.cursor() as cur:
                    experiments = [_exp(r) for r in cur.execute("SELECT * FROM experiments ORDER BY id")]
                    events = [_event(r) for r in cur.execute("SELECT * FROM events ORDER BY id")]
                    count_row = cur.execute("SELECT count(*) AS n FROM metrics").fetchone()
                    last_ids = self._last_ids(cur)

                def points() -> Iterator[MetricPoint]:
                    try:
                        with conn.cursor(name="optical_export") as named:
                            named.itersize = 10_000
                            named.execute("SELECT id, experiment_id, key, step, value, time FROM metrics "
                                          "ORDER BY id")
                            yield from (_point(r) for r in named)
                    except psycopg.Error as exc:
                        raise self._error(exc) from None

                count = int(count_row["n"]) if count_row else 0
                yield StudyExport(experiments, events, points(), count, last_ids)
        except psycopg.Error as exc:
            raise self._error(exc) from None

    def import_study(self, study: StudyExport) -> dict[str, int]:
        def copy(cur: psycopg.Cursor[DictRow], table: str, columns: Sequence[str],
                 rows: Iterable[tuple[Any, ...]]) -> int:
            n = 0
            with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(
                    sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)))) as cp:
                for row in rows:
                    cp.write_row(row)
                    n += 1
            return n

        with self._tx() as cur:
            # Nobody may write while we check that the store is empty and fill it.
            cur.execute("LOCK TABLE experiments, metrics, events IN EXCLUSIVE MODE")
            held = {}
            for table in ID_TABLES:
                row = cur.execute(sql.SQL("SELECT count(*) AS n FROM {}").format(
                    sql.Identifier(table))).fetchone()
                held[table] = int(row["n"]) if row else 0
            refusal = refuse_non_empty(self.location, held, self._last_ids(cur))
            if refusal:
                raise StoreError(refusal)
            counts = {
                "experiments": copy(cur, "experiments", EXPERIMENT_COLUMNS,
                                    map(experiment_values, study.experiments)),
                "metrics": copy(cur, "metrics", ("id", *METRIC_VALUE_COLUMNS),
                                map(metric_values, study.metrics)),
                "events": copy(cur, "events", EVENT_COLUMNS, map(event_values, study.events)),
            }
            # Later ids continue after the source's: ids are never handed out twice.
            top = self._last_ids(cur)
            for table in ID_TABLES:
                last = max(study.last_ids.get(table, 0), top[table])
                if last > 0:
                    cur.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s, true)", (table, last))
        return counts

    # ----------------------------------------------------------------- workers

    def register_worker(self, worker_id: str, host: str, pid: int, device: str, log_path: str = "") -> None:
        with self._cursor() as cur:
            cur.execute(
                "WITH w AS (INSERT INTO workers (id, host, pid, device, started_at, heartbeat_at, "
                "experiment_id, status, stop_requested, log_path) "
                f"VALUES (%(id)s, %(host)s, %(pid)s, %(device)s, {NOW}, {NOW}, "
                "NULL, %(idle)s, false, %(log)s) ON CONFLICT (id) DO UPDATE SET host = EXCLUDED.host, "
                "pid = EXCLUDED.pid, device = EXCLUDED.device, started_at = EXCLUDED.started_at, "
                "heartbeat_at = EXCLUDED.heartbeat_at, experiment_id = NULL, status = EXCLUDED.status, "
                "stop_requested = false, log_path = EXCLUDED.log_path RETURNING id) "
                "INSERT INTO events (experiment_id, time, kind, message) "
                f"SELECT NULL, {NOW}, %(kind)s, %(message)s FROM w",
                {"id": worker_id, "host": host, "pid": pid, "device": device, "idle": WorkerStatus.IDLE.value,
                 "log": log_path, "kind": EventKind.WORKER.value,
                 "message": f"worker {worker_id} started on {host} ({device})"})

    def worker_heartbeat(self, worker_id: str, experiment_id: int | None, status: WorkerStatus) -> bool:
        # Like a metric flush, a heartbeat need not wait for the disk.
        rows = self._rows(
            f"UPDATE workers SET heartbeat_at = {NOW}, experiment_id = %s, status = %s WHERE id = %s "
            "RETURNING stop_requested, set_config('synchronous_commit', 'off', true)",
            (experiment_id, WorkerStatus(status).value, worker_id))
        return bool(rows and rows[0]["stop_requested"])

    def request_worker_stop(self, worker_id: str | None = None, host: str | None = None) -> int:
        where, params = ["status != %s"], [WorkerStatus.STOPPED.value]
        if worker_id is not None:
            where.append("id = %s")
            params.append(worker_id)
        if host is not None:
            where.append("host = %s")
            params.append(host)
        with self._cursor() as cur:
            cur.execute(f"UPDATE workers SET stop_requested = true WHERE {' AND '.join(where)}", params)
            return cur.rowcount

    def unregister_worker(self, worker_id: str) -> None:
        with self._cursor() as cur:
            cur.execute(
                f"WITH w AS (UPDATE workers SET status = %s, experiment_id = NULL, heartbeat_at = {NOW} "
                "WHERE id = %s) "
                f"INSERT INTO events (experiment_id, time, kind, message) VALUES (NULL, {NOW}, %s, %s)",
                (WorkerStatus.STOPPED.value, worker_id, EventKind.WORKER.value,
                 f"worker {worker_id} stopped"))

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
                self._event(cur, None, EventKind.WORKER, worker_gone_message(r["id"], r["silent"]))
        return [r["id"] for r in rows]

    def list_workers(self, include_stopped: bool = False) -> list[WorkerInfo]:
        query, params = "SELECT * FROM workers", []
        if not include_stopped:
            query, params = query + " WHERE status NOT IN (%s, %s)", [WorkerStatus.STOPPED.value,
                                                                     WorkerStatus.GONE.value]
        return [
            WorkerInfo(r["id"], r["host"], r["pid"], r["device"], r["started_at"], r["heartbeat_at"],
                       r["experiment_id"], WorkerStatus(r["status"]), bool(r["stop_requested"]),
                       r["log_path"] or "")
            for r in self._rows(query + " ORDER BY started_at", params)
        ]

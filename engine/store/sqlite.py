"""The SQLite backend: the embedded default, one file beside the experiments.

WAL mode with a busy timeout, so one writer per run plus dashboards can share the file. Every
state change is a compare-and-set inside `BEGIN IMMEDIATE` (the write lock is taken up front,
so no transaction ever has to upgrade its lock and deadlock). Every write of a run is fenced on
its `RunLease`. Any sqlite3 error, in a statement or at COMMIT (disk full, I/O error, read-only
file), becomes a `StoreError` and the transaction is rolled back.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils

from engine.errors import StoreError
from engine.statuses import EventKind, Status, WorkerStatus
from engine.store import policy
from engine.store.base import PointRow
from engine.store.records import Event, Experiment, MetricPoint, RunLease, StudyExport
from engine.store.rows import (
    EVENT_COLUMNS,
    EXPERIMENT_COLUMNS,
    ID_TABLES,
    METRIC_VALUE_COLUMNS,
    batched,
    event_values,
    experiment_from_row,
    experiment_values,
    json_text,
    metric_values,
    refuse_non_empty,
)
from engine.store.sql_store import SqlStore
from engine.store.sqlite_schema import MIGRATIONS, SCHEMA_VERSION

Q, R = Status.QUEUED.value, Status.RUNNING.value  # bound as parameters, never spliced into SQL



def _describe(exc: sqlite3.Error) -> str:
    text = str(exc)
    low = text.lower()
    if "readonly" in low or "read-only" in low:
        return f"{text} (the database file or its folder is not writable)"
    if "disk is full" in low or "database or disk is full" in low:
        return f"{text} (free some space on that disk)"
    if "locked" in low or "busy" in low:
        return f"{text} (another process held the write lock past the busy timeout)"
    return text


class SqliteStore(SqlStore[sqlite3.Connection]):
    MARK, SPREAD_LISTS, TRUE = "?", True, "1"

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time,
                 busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self.clock = clock
        self._check_path()
        try:
            conn = sqlite3.connect(str(self.path), timeout=busy_timeout_s, isolation_level=None,
                                   check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            if "not a database" in str(exc):
                raise StoreError(f"--db {self.path}: not an SQLite database") from None
            raise StoreError(f"--db {self.path}: not a usable SQLite database "
                             f"({_describe(exc)})") from None
        self.conn = conn
        self.db = sqlite_utils.Database(conn)
        try:
            self._migrate()
        except BaseException:
            conn.close()
            raise

    def _check_path(self) -> None:
        p = self.path
        if p.is_dir():
            raise StoreError(f"--db {p}: is a directory; give a database file path")
        # Never open() the file here: closing any descriptor of a database file drops every POSIX
        # lock this process holds on it, so another Store open in this process would lose its
        # locks, and a writer elsewhere could delete the WAL under it (stale reads, corruption).
        # SQLite itself reports a non-database file ("file is not a database") in __init__.
        if not p.exists() and not p.parent.exists():
            raise StoreError(f"--db {p}: folder {p.parent} does not exist")
        if p.exists() and not p.is_file():
            raise StoreError(f"--db {p}: not a regular file (a device, a pipe or a socket)")

    def _migrate(self) -> None:
        version = self.schema_version()
        policy.refuse_newer_schema(self.location, version, SCHEMA_VERSION)
        if version == SCHEMA_VERSION:
            return
        with self._tx():
            # Re-read inside the write lock: another process may have migrated meanwhile.
            version = self.schema_version()
            for i in range(version, SCHEMA_VERSION):
                MIGRATIONS[i](self.db)
                self.conn.execute(f"PRAGMA user_version = {i + 1}")

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the write lock up front; any database error in it
        (statement or COMMIT) rolls back and becomes a StoreError."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {_describe(exc)}") from None
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except BaseException as exc:
            if self.conn.in_transaction:
                try:
                    self.conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # SQLite may already have rolled back (e.g. after SQLITE_FULL)
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"{self.path}: {_describe(exc)}") from None
            raise

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {_describe(exc)}") from None

    def _execute(self, c: sqlite3.Connection, query: str, params: Sequence[Any]) -> int:
        return c.execute(query, params).rowcount

    # ----------------------------------------------------------------- info

    def schema_version(self) -> int:
        return int(self._rows("PRAGMA user_version")[0][0])

    def change_token(self) -> object:
        # PRAGMA data_version changes whenever another connection commits; a single page read.
        return self._rows("PRAGMA data_version")[0][0]

    def check(self) -> dict[str, Any]:
        integrity = [r[0] for r in self._rows("PRAGMA integrity_check")]
        fk = self._rows("PRAGMA foreign_key_check")
        counts = {s.value: 0 for s in Status}
        for r in self._rows("SELECT status, count(*) FROM experiments GROUP BY status"):
            counts[r[0]] = r[1]
        return {
            "backend": "sqlite",
            "location": self.location,
            "path": str(self.path),
            "ok": integrity == ["ok"] and not fk,
            "integrity": integrity,
            "foreign_key_violations": len(fk),
            "schema_version": self.schema_version(),
            "supported_schema_version": SCHEMA_VERSION,
            "journal_mode": self._rows("PRAGMA journal_mode")[0][0],
            "experiments": counts,
            "metrics": self._rows("SELECT count(*) FROM metrics")[0][0],
            "events": self._rows("SELECT count(*) FROM events")[0][0],
        }

    # ----------------------------------------------------------------- experiments

    def _insert(self, c: sqlite3.Connection, values: Mapping[str, Any]) -> Experiment:
        # Ids are never reused, even after `rm` (see sqlite_schema._v3).
        last = c.execute("SELECT value FROM meta WHERE key = 'last_experiment_id'").fetchone()[0]
        row = {"id": last + 1, **self._bound(values)}
        c.execute(f"INSERT INTO experiments ({', '.join(row)}) "
                  f"VALUES ({', '.join('?' * len(row))})", list(row.values()))
        c.execute("UPDATE meta SET value = ? WHERE key = 'last_experiment_id'", (last + 1,))
        return experiment_from_row(c.execute("SELECT * FROM experiments WHERE id = ?",
                                             (last + 1,)).fetchone())

    def _bound(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Column values to bind, with policy.NOW read from this store's clock."""
        now = self.clock()
        return {k: now if v is policy.NOW else v for k, v in values.items()}

    def _update(self, c: sqlite3.Connection, exp_id: int, changes: Mapping[str, Any]) -> None:
        bound = self._bound(changes)
        c.execute(f"UPDATE experiments SET {', '.join(f'{k} = ?' for k in bound)} WHERE id = ?",
                  [*bound.values(), exp_id])

    def _require(self, c: sqlite3.Connection, ids: Sequence[int]) -> dict[int, sqlite3.Row]:
        rows = {}
        for i in ids:
            row = c.execute("SELECT * FROM experiments WHERE id = ?", (i,)).fetchone()
            if row is None:
                raise policy.not_found(i)
            rows[i] = row
        return rows

    def _retried_as(self, c: sqlite3.Connection, exp_id: int) -> int | None:
        row = c.execute("SELECT id FROM experiments WHERE retry_of = ?", (exp_id,)).fetchone()
        return None if row is None else int(row["id"])

    def _delete(self, c: sqlite3.Connection, ids: Sequence[int]) -> None:
        marks = ",".join("?" * len(ids))
        c.execute(f"DELETE FROM metrics WHERE experiment_id IN ({marks})", list(ids))
        c.execute(f"DELETE FROM events WHERE experiment_id IN ({marks})", list(ids))
        c.execute(f"DELETE FROM experiments WHERE id IN ({marks})", list(ids))

    # ----------------------------------------------------------------- a run's life

    def claim_next(self, worker_id: str, device: str = "",
                   skip: Collection[int] = ()) -> Experiment | None:
        now = self.clock()
        skipped = sorted(int(i) for i in skip)
        not_in = f" AND id NOT IN ({', '.join('?' * len(skipped))})" if skipped else ""
        with self._tx() as c:
            row = c.execute(
                f"SELECT id FROM experiments WHERE status = ?{not_in} "
                "ORDER BY priority DESC, id ASC LIMIT 1",
                (Q, *skipped),
            ).fetchone()
            if row is None:
                return None
            cur = c.execute(
                "UPDATE experiments SET status = ?, attempts = attempts + 1, worker_id = ?, "
                "device = ?, started_at = COALESCE(started_at, ?), attempt_started_at = ?, "
                "attempt_start_step = step, heartbeat_at = ? "
                "WHERE id = ? AND status = ?",
                (R, worker_id, device, now, now, now, row["id"], Q),
            )
            if cur.rowcount != 1:  # pragma: no cover - impossible under BEGIN IMMEDIATE
                return None
            self._event(c, row["id"], EventKind.CLAIMED, policy.claimed_message(worker_id, device))
        return self.get(row["id"])

    def _hold(self, c: sqlite3.Connection, lease: RunLease) -> sqlite3.Row:
        row = c.execute(
            "SELECT * FROM experiments WHERE id = ? AND status = ? AND worker_id = ? "
            "AND attempts = ?", (lease.experiment_id, R, lease.worker_id, lease.attempt)).fetchone()
        if row is None:
            raise policy.lease_lost(lease)
        return row

    def flush(self, lease: RunLease, metrics: Sequence[PointRow] = (), step: int | None = None,
              total: int | None = None) -> bool:
        now = self.clock()
        with self._tx() as c:
            row = self._hold(c, lease)
            c.executemany(
                "INSERT OR IGNORE INTO metrics (experiment_id, key, step, value, time) "
                "VALUES (?, ?, ?, ?, ?)",
                [(lease.experiment_id, k, int(s), float(v), float(t)) for k, s, v, t in metrics],
            )
            c.execute(
                "UPDATE experiments SET heartbeat_at = ?, step = COALESCE(?, step), "
                "total_steps = COALESCE(?, total_steps) WHERE id = ?",
                (now, step, total, lease.experiment_id),
            )
            return bool(row["cancel_requested"])

    def set_provenance(self, lease: RunLease, provenance: dict[str, Any]) -> None:
        with self._tx() as c:
            self._hold(c, lease)
            c.execute(
                "UPDATE experiments SET provenance = ?, code_version = COALESCE(?, code_version) "
                "WHERE id = ?",
                (json_text(provenance), provenance.get("code_version"), lease.experiment_id),
            )

    def log_run_event(self, lease: RunLease, kind: str, message: str) -> None:
        with self._tx() as c:
            self._hold(c, lease)
            self._event(c, lease.experiment_id, kind, message)

    def finish(self, lease: RunLease, status: Status, error: str | None = None) -> None:
        t = policy.finish(status, error)
        with self._tx() as c:
            self._hold(c, lease)
            self._apply(c, lease.experiment_id, t)

    def heartbeat_ages(self) -> dict[int, float]:
        now = self.clock()
        rows = self._rows("SELECT id, heartbeat_at FROM experiments WHERE status = ?", (R,))
        return {r["id"]: now - (r["heartbeat_at"] or now) for r in rows}

    def _stale(self, c: sqlite3.Connection, lease_s: float) -> list[sqlite3.Row]:
        now = self.clock()
        return c.execute("SELECT *, ? - COALESCE(heartbeat_at, ?) AS silent FROM experiments "
                         "WHERE status = ? AND heartbeat_at < ?",
                         (now, now, R, now - lease_s)).fetchall()

    # ----------------------------------------------------------------- metrics and events

    def metrics(self, exp_id: int | None = None, prefix: str | None = None,
                keys: Sequence[str] | None = None, after_rowid: int = 0) -> list[MetricPoint]:
        where = self._where()
        where.add("rowid > ?", after_rowid)
        if exp_id is not None:
            where.add("experiment_id = ?", exp_id)
        if prefix:
            # GLOB is case-sensitive and index-friendly; escape its wildcards in the prefix.
            escaped = prefix.replace("[", "[[]").replace("*", "[*]").replace("?", "[?]")
            where.add("key GLOB ?", escaped + "*")
        if keys is not None:
            where.among("key", keys)
        rows = self._rows("SELECT rowid, experiment_id, key, step, value, time FROM metrics"
                          f"{where.sql()} ORDER BY rowid", where.params)
        return [MetricPoint(*r) for r in rows]

    def metrics_since(self, cursor: object | None) -> tuple[list[MetricPoint], object]:
        # In SQLite one writer commits at a time and rowids are handed out inside that write
        # transaction (AUTOINCREMENT: never reused), so "rowid > cursor" sees every later point.
        if cursor is None:
            return [], int(self._rows("SELECT COALESCE(max(rowid), 0) FROM metrics")[0][0])
        if not isinstance(cursor, int):
            raise TypeError(f"not an SQLite metrics cursor: {cursor!r}")
        new = self.metrics(after_rowid=cursor)
        return new, (new[-1].rowid if new else cursor)

    def latest_metric(self, key: str) -> dict[int, float]:
        rows = self._rows(
            "SELECT m.experiment_id, m.value FROM metrics m JOIN "
            "(SELECT experiment_id, max(step) AS s FROM metrics WHERE key = ? "
            "GROUP BY experiment_id) x "
            "ON m.experiment_id = x.experiment_id AND m.step = x.s WHERE m.key = ?", (key, key))
        return {r[0]: r[1] for r in rows}

    def _event(self, c: sqlite3.Connection, exp_id: int | None, kind: str, message: str) -> None:
        c.execute("INSERT INTO events (experiment_id, time, kind, message) VALUES (?, ?, ?, ?)",
                  (exp_id, self.clock(), str(kind), message))

    def log_event(self, exp_id: int | None, kind: str, message: str) -> None:
        with self._tx() as c:
            self._event(c, exp_id, kind, message)

    def events_since(self, cursor: object | None) -> tuple[list[Event], object]:
        # As metrics_since: event ids are handed out inside the one write transaction
        # (AUTOINCREMENT).
        if cursor is not None and not isinstance(cursor, int):
            raise TypeError(f"not an SQLite events cursor: {cursor!r}")
        new = self.events(after_id=cursor or 0)
        return new, (new[-1].id if new else cursor or 0)

    # ----------------------------------------------------------------- copying a study

    def _last_ids(self) -> dict[str, int]:
        seq = {r[0]: r[1] for r in self._rows("SELECT name, seq FROM sqlite_sequence")}
        top = self._rows("SELECT (SELECT value FROM meta WHERE key = 'last_experiment_id'), "
                         "(SELECT COALESCE(max(rowid), 0) FROM metrics), "
                         "(SELECT COALESCE(max(id), 0) FROM events)")[0]
        return {"experiments": int(top[0] or 0),
                "metrics": max(int(top[1]), seq.get("metrics", 0)),
                "events": max(int(top[2]), seq.get("events", 0))}

    @contextmanager
    def export_study(self) -> Iterator[StudyExport]:
        # One read transaction: in WAL mode its snapshot holds while writers go on.
        try:
            self.conn.execute("BEGIN")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {_describe(exc)}") from None
        try:
            experiments = [experiment_from_row(r)
                           for r in self._rows("SELECT * FROM experiments ORDER BY id")]
            events = self.events()
            count = int(self._rows("SELECT count(*) FROM metrics")[0][0])
            last_ids = self._last_ids()

            def points() -> Iterator[MetricPoint]:
                try:
                    cur = self.conn.execute("SELECT rowid, experiment_id, key, step, value, "
                                            "time FROM metrics ORDER BY rowid")
                    while rows := cur.fetchmany(10_000):
                        yield from (MetricPoint(*r) for r in rows)
                except sqlite3.Error as exc:
                    raise StoreError(f"{self.path}: {_describe(exc)}") from None

            yield StudyExport(experiments, events, points(), count, last_ids)
        finally:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")  # read only: nothing to keep

    def import_study(self, study: StudyExport) -> dict[str, int]:
        with self._tx() as c:
            held = {t: int(c.execute(f"SELECT count(*) FROM {t}").fetchone()[0])
                    for t in ID_TABLES}
            refusal = refuse_non_empty(self.location, held, self._last_ids())
            if refusal:
                raise StoreError(refusal)
            c.executemany(f"INSERT INTO experiments ({', '.join(EXPERIMENT_COLUMNS)}) "
                          f"VALUES ({', '.join('?' * len(EXPERIMENT_COLUMNS))})",
                          [experiment_values(e) for e in study.experiments])
            c.executemany(f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) "
                          "VALUES (?, ?, ?, ?, ?)", [event_values(ev) for ev in study.events])
            n_metrics = 0
            for chunk in batched(study.metrics, 10_000):
                c.executemany(f"INSERT INTO metrics (rowid, {', '.join(METRIC_VALUE_COLUMNS)}) "
                              "VALUES (?, ?, ?, ?, ?, ?)", [metric_values(m) for m in chunk])
                n_metrics += len(chunk)
            # Later ids continue after the source's: ids are never handed out twice.
            top = self._last_ids()
            last = {t: max(study.last_ids.get(t, 0), top[t]) for t in ID_TABLES}
            c.execute("UPDATE meta SET value = ? WHERE key = 'last_experiment_id'",
                      (last["experiments"],))
            for table in ("metrics", "events"):
                c.execute("DELETE FROM sqlite_sequence WHERE name = ?", (table,))
                c.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)",
                          (table, last[table]))
        return {"experiments": len(study.experiments), "metrics": n_metrics,
                "events": len(study.events)}

    # ----------------------------------------------------------------- workers

    def register_worker(self, worker_id: str, host: str, pid: int, device: str,
                        log_path: str = "") -> None:
        now = self.clock()
        with self._tx() as c:
            c.execute(
                "INSERT OR REPLACE INTO workers (id, host, pid, device, started_at, heartbeat_at, "
                "experiment_id, status, stop_requested, log_path) "
                "VALUES (?, ?, ?, ?, ?, ?, NULL, ?, 0, ?)",
                (worker_id, host, pid, device, now, now, WorkerStatus.IDLE.value, log_path))
            self._event(c, None, EventKind.WORKER,
                        policy.worker_started_message(worker_id, host, device))

    def worker_heartbeat(self, worker_id: str, experiment_id: int | None,
                         status: WorkerStatus) -> bool:
        with self._tx() as c:
            c.execute("UPDATE workers SET heartbeat_at = ?, experiment_id = ?, status = ? "
                      "WHERE id = ?",
                      (self.clock(), experiment_id, WorkerStatus(status).value, worker_id))
            row = c.execute("SELECT stop_requested FROM workers WHERE id = ?",
                            (worker_id,)).fetchone()
        return bool(row and row[0])

    def unregister_worker(self, worker_id: str) -> None:
        with self._tx() as c:
            c.execute("UPDATE workers SET status = ?, experiment_id = NULL, heartbeat_at = ? "
                      "WHERE id = ?", (WorkerStatus.STOPPED.value, self.clock(), worker_id))
            self._event(c, None, EventKind.WORKER, policy.worker_stopped_message(worker_id))

    def reap_workers(self, silent_s: float) -> list[str]:
        now = self.clock()
        ended = (WorkerStatus.STOPPED.value, WorkerStatus.GONE.value)
        with self._tx() as c:
            rows = c.execute("SELECT id, heartbeat_at FROM workers WHERE status NOT IN (?, ?) "
                             "AND heartbeat_at < ? ORDER BY started_at",
                             (*ended, now - silent_s)).fetchall()
            for worker_id, heartbeat_at in rows:
                c.execute("UPDATE workers SET status = ?, experiment_id = NULL WHERE id = ?",
                          (WorkerStatus.GONE.value, worker_id))
                self._event(c, None, EventKind.WORKER,
                            policy.worker_gone_message(worker_id, now - heartbeat_at))
        return [r[0] for r in rows]

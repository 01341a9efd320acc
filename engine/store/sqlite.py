"""The SQLite backend: the embedded default, one file beside the experiments.

WAL mode with a busy timeout, so one writer per run plus dashboards can share the file. Every
state change is a compare-and-set inside `BEGIN IMMEDIATE` (the write lock is taken up front,
so no transaction ever has to upgrade its lock and deadlock). Every write of a run is fenced on
its `RunLease`. Any sqlite3 error, in a statement or at COMMIT (disk full, I/O error, read-only
file), becomes a `StoreError` and the transaction is rolled back.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils

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
    batched,
    event_values,
    experiment_values,
    metric_values,
    refuse_non_empty,
    tags_of,
    tags_text,
)
from engine.store.sqlite_schema import MIGRATIONS, SCHEMA_VERSION
from engine.tags import change_text, changed

Q, R = Status.QUEUED.value, Status.RUNNING.value  # bound as parameters, never spliced into SQL



# --------------------------------------------------------------------------- rows


def _exp(row: sqlite3.Row) -> Experiment:
    d = dict(row)
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


class SqliteStore(Store):
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
            raise StoreError(f"--db {self.path}: not a usable SQLite database ({_describe(exc)})") from None
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
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: schema version {version} is newer than this optical-tui "
                f"understands ({SCHEMA_VERSION}); upgrade optical-tui"
            )
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

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {_describe(exc)}") from None

    # ----------------------------------------------------------------- info

    def schema_version(self) -> int:
        return int(self._read("PRAGMA user_version")[0][0])

    def change_token(self) -> object:
        # PRAGMA data_version changes whenever another connection commits; a single page read.
        return self._read("PRAGMA data_version")[0][0]

    def check(self) -> dict[str, Any]:
        integrity = [r[0] for r in self._read("PRAGMA integrity_check")]
        fk = self._read("PRAGMA foreign_key_check")
        counts = {s.value: 0 for s in Status}
        for r in self._read("SELECT status, count(*) FROM experiments GROUP BY status"):
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
            "journal_mode": self._read("PRAGMA journal_mode")[0][0],
            "experiments": counts,
            "metrics": self._read("SELECT count(*) FROM metrics")[0][0],
            "events": self._read("SELECT count(*) FROM events")[0][0],
        }

    # ----------------------------------------------------------------- experiments

    def add_experiments(self, specs: Iterable[NewExperiment]) -> list[Experiment]:
        specs = list(specs)
        now = self.clock()
        ids = []
        with self._tx() as c:
            last = c.execute("SELECT value FROM meta WHERE key = 'last_experiment_id'").fetchone()[0]
            for s in specs:
                # Ids are never reused, even after `rm` (see _v3).
                last += 1
                c.execute(
                    "INSERT INTO experiments (id, name, ratio, seed, priority, status, config, "
                    "code_version, max_attempts, created_at, retry_of, factors, tags) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (last, s.name, s.ratio, s.seed, s.priority, Q, json.dumps(s.config, sort_keys=True),
                     s.code_version, s.max_attempts, now, s.retry_of, json.dumps(s.factors, sort_keys=True),
                     tags_text(s.tags)),
                )
                ids.append(last)
                self._event(c, last, EventKind.QUEUED, f"queued {s.name!r} ratio {s.ratio} seed {s.seed}")
            c.execute("UPDATE meta SET value = ? WHERE key = 'last_experiment_id'", (last,))
        return self.list_experiments(ids=ids)

    def get(self, exp_id: int) -> Experiment:
        rows = self._read("SELECT * FROM experiments WHERE id = ?", (exp_id,))
        if not rows:
            raise ExperimentNotFound(f"no experiment with id {exp_id}")
        return _exp(rows[0])

    def list_experiments(self, status: Status | Sequence[Status] | None = None,
                         ids: Sequence[int] | None = None, name: str | None = None) -> list[Experiment]:
        where: list[str] = []
        params: list[Any] = []
        if status is not None:
            statuses = [Status(status)] if isinstance(status, str) else [Status(s) for s in status]
            where.append(f"status IN ({','.join('?' * len(statuses))})")
            params += [s.value for s in statuses]
        if ids is not None:
            where.append(f"id IN ({','.join('?' * len(ids))})")
            params += list(ids)
        if name is not None:
            where.append("name = ?")
            params.append(name)
        sql = "SELECT * FROM experiments"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [_exp(r) for r in self._read(sql + " ORDER BY id", params)]

    def _require(self, c: sqlite3.Connection, ids: Sequence[int]) -> dict[int, sqlite3.Row]:
        rows = {}
        for i in ids:
            row = c.execute("SELECT * FROM experiments WHERE id = ?", (i,)).fetchone()
            if row is None:
                raise ExperimentNotFound(f"no experiment with id {i}")
            rows[i] = row
        return rows

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
                "UPDATE experiments SET status = ?, attempts = attempts + 1, worker_id = ?, device = ?, "
                "started_at = COALESCE(started_at, ?), attempt_started_at = ?, attempt_start_step = step, "
                "heartbeat_at = ? "
                "WHERE id = ? AND status = ?",
                (R, worker_id, device, now, now, now, row["id"], Q),
            )
            if cur.rowcount != 1:  # pragma: no cover - impossible under BEGIN IMMEDIATE
                return None
            self._event(c, row["id"], EventKind.CLAIMED, f"claimed by {worker_id} on {device or '?'}")
        return self.get(row["id"])

    def _fence(self, c: sqlite3.Connection, lease: RunLease) -> sqlite3.Row:
        row = c.execute(
            "SELECT * FROM experiments WHERE id = ? AND status = ? AND worker_id = ? AND attempts = ?",
            (lease.experiment_id, R, lease.worker_id, lease.attempt)).fetchone()
        if row is None:
            raise LeaseLost(f"experiment {lease.experiment_id} is no longer held by worker "
                            f"{lease.worker_id} (attempt {lease.attempt})")
        return row

    def flush(self, lease: RunLease, metrics: Sequence[PointRow] = (), step: int | None = None,
              total: int | None = None) -> bool:
        now = self.clock()
        with self._tx() as c:
            row = self._fence(c, lease)
            c.executemany(
                "INSERT OR IGNORE INTO metrics (experiment_id, key, step, value, time) VALUES (?, ?, ?, ?, ?)",
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
            self._fence(c, lease)
            c.execute(
                "UPDATE experiments SET provenance = ?, code_version = COALESCE(?, code_version) WHERE id = ?",
                (json.dumps(provenance, sort_keys=True), provenance.get("code_version"), lease.experiment_id),
            )

    def log_run_event(self, lease: RunLease, kind: str, message: str) -> None:
        with self._tx() as c:
            self._fence(c, lease)
            self._event(c, lease.experiment_id, kind, message)

    def finish(self, lease: RunLease, status: Status, error: str | None = None) -> None:
        if status not in TERMINAL:
            raise InvalidTransition(f"finish: {status!r} is not a terminal status")
        now = self.clock()
        with self._tx() as c:
            self._fence(c, lease)
            c.execute(
                "UPDATE experiments SET status = ?, finished_at = ?, heartbeat_at = ?, error = ? WHERE id = ?",
                (Status(status).value, now, now, error, lease.experiment_id),
            )
            self._event(c, lease.experiment_id, EventKind(Status(status).value),
                        error.strip().splitlines()[-1] if error and error.strip() else Status(status).value)

    def release(self, lease: RunLease, reason: str = "released", *, count_attempt: bool = False) -> None:
        now = self.clock()
        with self._tx() as c:
            row = self._fence(c, lease)
            status, msg = release_outcome(reason, row["attempts"], row["max_attempts"],
                                          count_attempt)
            if status == Status.FAILED:
                c.execute("UPDATE experiments SET status = ?, finished_at = ?, error = ?, worker_id = NULL "
                          "WHERE id = ?", (Status.FAILED.value, now, msg, lease.experiment_id))
                self._event(c, lease.experiment_id, EventKind.FAILED, msg)
                return
            # A drain hands the attempt back; a crash keeps it counted.
            c.execute(
                "UPDATE experiments SET status = ?, worker_id = NULL, "
                "attempts = CASE WHEN ? THEN attempts ELSE MAX(attempts - 1, 0) END WHERE id = ?",
                (Q, int(count_attempt), lease.experiment_id),
            )
            self._event(c, lease.experiment_id, EventKind.REQUEUED, msg)

    def heartbeat_ages(self) -> dict[int, float]:
        now = self.clock()
        rows = self._read("SELECT id, heartbeat_at FROM experiments WHERE status = ?", (R,))
        return {r["id"]: now - (r["heartbeat_at"] or now) for r in rows}

    def requeue_stale(self, lease_s: float) -> list[int]:
        now = self.clock()
        touched = []
        with self._tx() as c:
            rows = c.execute("SELECT * FROM experiments WHERE status = ? AND heartbeat_at < ?",
                             (R, now - lease_s)).fetchall()
            for r in rows:
                silent = now - (r["heartbeat_at"] or now)
                if r["cancel_requested"]:
                    # The user asked to stop it; a lost worker does not change that.
                    msg = f"cancelled: its worker {r['worker_id']} was lost before the cancel took effect"
                    c.execute("UPDATE experiments SET status = ?, finished_at = ?, worker_id = NULL WHERE id = ?",
                              (Status.CANCELLED.value, now, r["id"]))
                    self._event(c, r["id"], EventKind.CANCELLED, msg)
                elif r["attempts"] >= r["max_attempts"]:
                    msg = f"lost: no heartbeat for {silent:.0f}s after {r['attempts']} attempt(s)"
                    c.execute(
                        "UPDATE experiments SET status = ?, finished_at = ?, error = ?, worker_id = NULL WHERE id = ?",
                        (Status.FAILED.value, now, msg, r["id"]))
                    self._event(c, r["id"], EventKind.FAILED, msg)
                else:
                    c.execute("UPDATE experiments SET status = ?, worker_id = NULL WHERE id = ?", (Q, r["id"]))
                    self._event(c, r["id"], EventKind.REQUEUED,
                                f"lost worker {r['worker_id']} (no heartbeat for {silent:.0f}s); requeued")
                touched.append(r["id"])
        return touched

    def request_cancel(self, ids: Sequence[int]) -> list[Experiment]:
        now = self.clock()
        with self._tx() as c:
            rows = self._require(c, ids)
            check_cancellable(rows)
            for i, r in rows.items():
                if r["status"] == Q:
                    c.execute("UPDATE experiments SET status = ?, finished_at = ? WHERE id = ?",
                              (Status.CANCELLED.value, now, i))
                    self._event(c, i, EventKind.CANCELLED, "cancelled while queued")
                else:
                    c.execute("UPDATE experiments SET cancel_requested = 1 WHERE id = ?", (i,))
                    self._event(c, i, EventKind.CANCEL_REQUESTED, "cancel requested")
        return self.list_experiments(ids=list(ids))

    def retry(self, ids: Sequence[int]) -> list[Experiment]:
        with self._tx() as c:
            rows = self._require(c, ids)
            check_retryable(rows)
            for i in rows:
                again = c.execute("SELECT id FROM experiments WHERE retry_of = ?", (i,)).fetchone()
                if again is not None:
                    raise already_retried(i, again["id"])
            return self._copy(c, rows, retry=True)

    def clone(self, ids: Sequence[int]) -> list[Experiment]:
        with self._tx() as c:
            return self._copy(c, self._require(c, ids), retry=False)

    def _copy(self, c: sqlite3.Connection, rows: dict[int, sqlite3.Row], retry: bool) -> list[Experiment]:
        # Inside the caller's transaction, so a check and the copy it allows are one step.
        now = self.clock()
        last = c.execute("SELECT value FROM meta WHERE key = 'last_experiment_id'").fetchone()[0]
        ids = []
        for i, r in rows.items():
            last += 1
            c.execute(
                "INSERT INTO experiments (id, name, ratio, seed, priority, status, config, code_version, "
                "max_attempts, created_at, retry_of, factors, tags) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (last, r["name"], r["ratio"], r["seed"], r["priority"], Q, r["config"], r["code_version"] or "",
                 r["max_attempts"], now, i if retry else None, r["factors"], r["tags"]),
            )
            self._event(c, last, EventKind.QUEUED, f"{'retry' if retry else 'clone'} of #{i}")
            ids.append(last)
        c.execute("UPDATE meta SET value = ? WHERE key = 'last_experiment_id'", (last,))
        return [_exp(r) for r in c.execute(
            f"SELECT * FROM experiments WHERE id IN ({','.join('?' * len(ids))}) ORDER BY id", ids)]

    def retag(self, ids: Sequence[int], add: Sequence[str] = (),
              remove: Sequence[str] = ()) -> list[Experiment]:
        with self._tx() as c:
            for i, r in self._require(c, ids).items():
                before = tags_of(r["tags"])
                after = changed(before, add, remove)
                if after != before:
                    c.execute("UPDATE experiments SET tags = ? WHERE id = ?", (tags_text(after), i))
                    self._event(c, i, EventKind.INFO, "tags " + change_text(
                        [t for t in after if t not in before],
                        [t for t in before if t not in after]))
        return self.list_experiments(ids=list(ids))

    def annotate(self, exp_id: int, note: str) -> Experiment:
        with self._tx() as c:
            self._require(c, [exp_id])
            c.execute("UPDATE experiments SET note = ? WHERE id = ?", (note, exp_id))
            self._event(c, exp_id, EventKind.INFO, f"note: {note}" if note else "note cleared")
        return self.get(exp_id)

    def remove(self, ids: Sequence[int]) -> int:
        with self._tx() as c:
            rows = self._require(c, ids)
            check_removable(rows)
            marks = ",".join("?" * len(ids))
            c.execute(f"DELETE FROM metrics WHERE experiment_id IN ({marks})", list(ids))
            c.execute(f"DELETE FROM events WHERE experiment_id IN ({marks})", list(ids))
            c.execute(f"DELETE FROM experiments WHERE id IN ({marks})", list(ids))
        return len(ids)

    # ----------------------------------------------------------------- metrics and events

    def metrics(self, exp_id: int | None = None, prefix: str | None = None,
                keys: Sequence[str] | None = None, after_rowid: int = 0) -> list[MetricPoint]:
        where: list[str] = ["rowid > ?"]
        params: list[Any] = [after_rowid]
        if exp_id is not None:
            where.append("experiment_id = ?")
            params.append(exp_id)
        if prefix:
            # GLOB is case-sensitive and index-friendly; escape its wildcards in the prefix.
            where.append("key GLOB ?")
            params.append(prefix.replace("[", "[[]").replace("*", "[*]").replace("?", "[?]") + "*")
        if keys is not None:
            where.append(f"key IN ({','.join('?' * len(keys))})")
            params += list(keys)
        rows = self._read(
            f"SELECT rowid, experiment_id, key, step, value, time FROM metrics WHERE {' AND '.join(where)} "
            "ORDER BY rowid", params)
        return [MetricPoint(*r) for r in rows]

    def metrics_since(self, cursor: object | None) -> tuple[list[MetricPoint], object]:
        # In SQLite one writer commits at a time and rowids are handed out inside that write
        # transaction (AUTOINCREMENT: never reused), so "rowid > cursor" sees every later point.
        if cursor is None:
            return [], int(self._read("SELECT COALESCE(max(rowid), 0) FROM metrics")[0][0])
        if not isinstance(cursor, int):
            raise TypeError(f"not an SQLite metrics cursor: {cursor!r}")
        new = self.metrics(after_rowid=cursor)
        return new, (new[-1].rowid if new else cursor)

    def latest_metric(self, key: str) -> dict[int, float]:
        rows = self._read(
            "SELECT m.experiment_id, m.value FROM metrics m JOIN "
            "(SELECT experiment_id, max(step) AS s FROM metrics WHERE key = ? GROUP BY experiment_id) x "
            "ON m.experiment_id = x.experiment_id AND m.step = x.s WHERE m.key = ?", (key, key))
        return {r[0]: r[1] for r in rows}

    def _event(self, c: sqlite3.Connection, exp_id: int | None, kind: str, message: str) -> None:
        c.execute("INSERT INTO events (experiment_id, time, kind, message) VALUES (?, ?, ?, ?)",
                  (exp_id, self.clock(), str(kind), message))

    def log_event(self, exp_id: int | None, kind: str, message: str) -> None:
        with self._tx() as c:
            self._event(c, exp_id, kind, message)

    def events(self, exp_id: int | None = None, after_id: int = 0) -> list[Event]:
        if exp_id is None:
            rows = self._read("SELECT * FROM events WHERE id > ? ORDER BY id", (after_id,))
        else:
            rows = self._read("SELECT * FROM events WHERE experiment_id = ? AND id > ? ORDER BY id",
                              (exp_id, after_id))
        return [Event(r["id"], r["experiment_id"], r["time"], r["kind"], r["message"]) for r in rows]

    def events_since(self, cursor: object | None) -> tuple[list[Event], object]:
        # As metrics_since: event ids are handed out inside the one write transaction (AUTOINCREMENT).
        if cursor is not None and not isinstance(cursor, int):
            raise TypeError(f"not an SQLite events cursor: {cursor!r}")
        new = self.events(after_id=cursor or 0)
        return new, (new[-1].id if new else cursor or 0)

    # ----------------------------------------------------------------- copying a study

    def _last_ids(self) -> dict[str, int]:
        seq = {r[0]: r[1] for r in self._read("SELECT name, seq FROM sqlite_sequence")}
        top = self._read("SELECT (SELECT value FROM meta WHERE key = 'last_experiment_id'), "
                         "(SELECT COALESCE(max(rowid), 0) FROM metrics), (SELECT COALESCE(max(id), 0) FROM events)")[0]
        return {"experiments": int(top[0] or 0), "metrics": max(int(top[1]), seq.get("metrics", 0)),
                "events": max(int(top[2]), seq.get("events", 0))}

    @contextmanager
    def export_study(self) -> Iterator[StudyExport]:
        # One read transaction: in WAL mode its snapshot holds while writers go on.
        try:
            self.conn.execute("BEGIN")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {_describe(exc)}") from None
        try:
            experiments = [_exp(r) for r in self._read("SELECT * FROM experiments ORDER BY id")]
            events = self.events()
            count = int(self._read("SELECT count(*) FROM metrics")[0][0])
            last_ids = self._last_ids()

            def points() -> Iterator[MetricPoint]:
                try:
                    cur = self.conn.execute("SELECT rowid, experiment_id, key, step, value, time FROM metrics "
                                            "ORDER BY rowid")
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
            held = {t: int(c.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in ID_TABLES}
            refusal = refuse_non_empty(self.location, held, self._last_ids())
            if refusal:
                raise StoreError(refusal)
            c.executemany(f"INSERT INTO experiments ({', '.join(EXPERIMENT_COLUMNS)}) "
                          f"VALUES ({', '.join('?' * len(EXPERIMENT_COLUMNS))})",
                          [experiment_values(e) for e in study.experiments])
            c.executemany(f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) VALUES (?, ?, ?, ?, ?)",
                          [event_values(ev) for ev in study.events])
            n_metrics = 0
            for chunk in batched(study.metrics, 10_000):
                c.executemany(f"INSERT INTO metrics (rowid, {', '.join(METRIC_VALUE_COLUMNS)}) "
                              "VALUES (?, ?, ?, ?, ?, ?)", [metric_values(m) for m in chunk])
                n_metrics += len(chunk)
            # Later ids continue after the source's: ids are never handed out twice.
            top = self._last_ids()
            last = {t: max(study.last_ids.get(t, 0), top[t]) for t in ID_TABLES}
            c.execute("UPDATE meta SET value = ? WHERE key = 'last_experiment_id'", (last["experiments"],))
            for table in ("metrics", "events"):
                c.execute("DELETE FROM sqlite_sequence WHERE name = ?", (table,))
                c.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table, last[table]))
        return {"experiments": len(study.experiments), "metrics": n_metrics, "events": len(study.events)}

    # ----------------------------------------------------------------- workers

    def register_worker(self, worker_id: str, host: str, pid: int, device: str, log_path: str = "") -> None:
        now = self.clock()
        with self._tx() as c:
            c.execute(
                "INSERT OR REPLACE INTO workers (id, host, pid, device, started_at, heartbeat_at, "
                "experiment_id, status, stop_requested, log_path) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, 0, ?)",
                (worker_id, host, pid, device, now, now, WorkerStatus.IDLE.value, log_path))
            self._event(c, None, EventKind.WORKER, f"worker {worker_id} started on {host} ({device})")

    def worker_heartbeat(self, worker_id: str, experiment_id: int | None, status: WorkerStatus) -> bool:
        with self._tx() as c:
            c.execute("UPDATE workers SET heartbeat_at = ?, experiment_id = ?, status = ? WHERE id = ?",
                      (self.clock(), experiment_id, WorkerStatus(status).value, worker_id))
            row = c.execute("SELECT stop_requested FROM workers WHERE id = ?", (worker_id,)).fetchone()
        return bool(row and row[0])

    def request_worker_stop(self, worker_id: str | None = None, host: str | None = None) -> int:
        where, params = ["status != ?"], [WorkerStatus.STOPPED.value]
        if worker_id is not None:
            where.append("id = ?")
            params.append(worker_id)
        if host is not None:
            where.append("host = ?")
            params.append(host)
        with self._tx() as c:
            return c.execute(f"UPDATE workers SET stop_requested = 1 WHERE {' AND '.join(where)}", params).rowcount

    def unregister_worker(self, worker_id: str) -> None:
        with self._tx() as c:
            c.execute("UPDATE workers SET status = ?, experiment_id = NULL, heartbeat_at = ? WHERE id = ?",
                      (WorkerStatus.STOPPED.value, self.clock(), worker_id))
            self._event(c, None, EventKind.WORKER, f"worker {worker_id} stopped")

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
                            worker_gone_message(worker_id, now - heartbeat_at))
        return [r[0] for r in rows]

    def list_workers(self, include_stopped: bool = False) -> list[WorkerInfo]:
        sql, params = "SELECT * FROM workers", []
        if not include_stopped:
            sql, params = (sql + " WHERE status NOT IN (?, ?)",
                           [WorkerStatus.STOPPED.value, WorkerStatus.GONE.value])
        return [
            WorkerInfo(r["id"], r["host"], r["pid"], r["device"], r["started_at"], r["heartbeat_at"],
                       r["experiment_id"], WorkerStatus(r["status"]), bool(r["stop_requested"]), r["log_path"] or "")
            for r in self._read(sql + " ORDER BY started_at", params)
        ]

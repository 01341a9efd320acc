"""The experiment store: the only module with SQL.

SQLite in WAL mode with a busy timeout, so one writer per run plus dashboards can share a
database file. Every state change is a compare-and-set inside `BEGIN IMMEDIATE`: two
processes can never claim the same row, and terminal states (done, failed, cancelled) are
final. Callers only ever see frozen dataclasses.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import sqlite_utils

from engine.errors import ExperimentNotFound, InvalidTransition, StoreError

STATUSES = ("queued", "running", "done", "failed", "cancelled")
TERMINAL = ("done", "failed", "cancelled")


@dataclass(frozen=True)
class NewExperiment:
    name: str
    ratio: str
    seed: int
    config: dict[str, Any]
    priority: int = 0
    code_version: str = ""
    max_attempts: int = 3
    retry_of: int | None = None


@dataclass(frozen=True)
class Experiment:
    id: int
    name: str
    ratio: str
    seed: int
    priority: int
    status: str
    config: dict[str, Any]
    code_version: str
    attempts: int
    max_attempts: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    heartbeat_at: float | None
    worker_id: str | None
    cancel_requested: bool
    error: str | None
    step: int
    total_steps: int
    device: str | None
    provenance: dict[str, Any] = field(default_factory=dict)
    retry_of: int | None = None

    @property
    def progress(self) -> float:
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0


@dataclass(frozen=True)
class Metric:
    rowid: int
    experiment_id: int
    key: str
    step: int
    value: float
    time: float


@dataclass(frozen=True)
class Event:
    id: int
    experiment_id: int | None
    time: float
    kind: str
    message: str


@dataclass(frozen=True)
class Worker:
    id: str
    host: str
    pid: int
    device: str
    started_at: float
    heartbeat_at: float
    experiment_id: int | None
    status: str
    stop_requested: bool
    log_path: str


class LeaseLost(StoreError):
    """The run no longer belongs to this worker (requeued after a stale heartbeat, or removed)."""


# --------------------------------------------------------------------------- schema


def _v1(db: sqlite_utils.Database) -> None:
    db["experiments"].create(
        {
            "id": int, "name": str, "ratio": str, "seed": int, "priority": int, "status": str,
            "config": str, "code_version": str, "attempts": int, "max_attempts": int,
            "created_at": float, "started_at": float, "finished_at": float, "heartbeat_at": float,
            "worker_id": str, "cancel_requested": int, "error": str, "step": int,
            "total_steps": int, "device": str, "provenance": str, "retry_of": int,
        },
        pk="id",
        not_null={"name", "ratio", "seed", "priority", "status", "config", "created_at"},
        defaults={"attempts": 0, "max_attempts": 3, "cancel_requested": 0, "step": 0,
                  "total_steps": 0, "code_version": "", "provenance": "{}"},
    )
    db["experiments"].create_index(["status", "priority", "id"])
    db["metrics"].create(
        {"rowid": int, "experiment_id": int, "key": str, "step": int, "value": float, "time": float},
        pk="rowid",
        not_null={"experiment_id", "key", "step", "time"},
        foreign_keys=[("experiment_id", "experiments", "id")],
    )
    db["metrics"].create_index(["experiment_id", "key", "step"], unique=True)
    db["events"].create(
        {"id": int, "experiment_id": int, "time": float, "kind": str, "message": str},
        pk="id",
        not_null={"time", "kind", "message"},
    )
    db["events"].create_index(["experiment_id", "id"])
    db["workers"].create(
        {"id": str, "host": str, "pid": int, "device": str, "started_at": float,
         "heartbeat_at": float, "experiment_id": int, "status": str, "stop_requested": int,
         "log_path": str},
        pk="id",
        defaults={"stop_requested": 0, "log_path": ""},
    )


def _v2(db: sqlite_utils.Database) -> None:
    # The dashboard's "latest value of key K for every experiment" reads by key first.
    db["metrics"].create_index(["key", "experiment_id", "step"])


def _v3(db: sqlite_utils.Database) -> None:
    # SQLite reuses the highest INTEGER PRIMARY KEY after a delete, and a run directory
    # (runs/<id>/, checkpoints included) is keyed by id: a reused id would resume a deleted
    # experiment's checkpoint. The meta row remembers the highest id ever handed out.
    db["meta"].create({"key": str, "value": int}, pk="key")
    db.execute("INSERT INTO meta (key, value) SELECT 'last_experiment_id', COALESCE(max(id), 0) FROM experiments")


# Ordered migrations: index i moves the schema from version i to i + 1. Never edit a shipped
# entry; append a new one.
MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_v1, _v2, _v3]
SCHEMA_VERSION = len(MIGRATIONS)


# --------------------------------------------------------------------------- store


def _exp(row: sqlite3.Row) -> Experiment:
    d = dict(row)
    return Experiment(
        id=d["id"], name=d["name"], ratio=d["ratio"], seed=d["seed"], priority=d["priority"],
        status=d["status"], config=json.loads(d["config"]), code_version=d["code_version"] or "",
        attempts=d["attempts"], max_attempts=d["max_attempts"], created_at=d["created_at"],
        started_at=d["started_at"], finished_at=d["finished_at"], heartbeat_at=d["heartbeat_at"],
        worker_id=d["worker_id"], cancel_requested=bool(d["cancel_requested"]), error=d["error"],
        step=d["step"] or 0, total_steps=d["total_steps"] or 0, device=d["device"],
        provenance=json.loads(d["provenance"] or "{}"), retry_of=d["retry_of"],
    )


class Store:
    """One connection to an experiments database. Not shared across threads: open one each."""

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time,
                 busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
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
        except sqlite3.DatabaseError as exc:
            if "not a database" in str(exc):
                raise StoreError(f"--db {self.path}: not an SQLite database") from None
            raise StoreError(f"{self.path}: not a usable SQLite database ({exc})") from None
        self.conn = conn
        self.db = sqlite_utils.Database(conn)
        self._migrate()

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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the write lock up front (no upgrade deadlocks)."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: {exc}") from None
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: {exc}") from None

    # ----------------------------------------------------------------- info

    def schema_version(self) -> int:
        return self._read("PRAGMA user_version")[0][0]

    def data_version(self) -> int:
        """Changes whenever another connection commits; cheap to poll."""
        return self._read("PRAGMA data_version")[0][0]

    def check(self) -> dict[str, Any]:
        integrity = [r[0] for r in self._read("PRAGMA integrity_check")]
        fk = self._read("PRAGMA foreign_key_check")
        counts = {s: 0 for s in STATUSES}
        for r in self._read("SELECT status, count(*) FROM experiments GROUP BY status"):
            counts[r[0]] = r[1]
        return {
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
        """Insert all or nothing."""
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
                    "code_version, max_attempts, created_at, retry_of) "
                    "VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?)",
                    (last, s.name, s.ratio, s.seed, s.priority, json.dumps(s.config, sort_keys=True),
                     s.code_version, s.max_attempts, now, s.retry_of),
                )
                ids.append(last)
                self._event(c, last, "queued", f"queued {s.name!r} ratio {s.ratio} seed {s.seed}")
            c.execute("UPDATE meta SET value = ? WHERE key = 'last_experiment_id'", (last,))
        return self.list_experiments(ids=ids)

    def get(self, exp_id: int) -> Experiment:
        rows = self._read("SELECT * FROM experiments WHERE id = ?", (exp_id,))
        if not rows:
            raise ExperimentNotFound(f"no experiment with id {exp_id}")
        return _exp(rows[0])

    def list_experiments(self, status: str | Sequence[str] | None = None,
                         ids: Sequence[int] | None = None, name: str | None = None) -> list[Experiment]:
        where, params = [], []
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            bad = [s for s in statuses if s not in STATUSES]
            if bad:
                raise InvalidTransition(f"unknown status {bad[0]!r}; valid: {', '.join(STATUSES)}")
            where.append(f"status IN ({','.join('?' * len(statuses))})")
            params += statuses
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

    def claim_next(self, worker_id: str, device: str = "") -> Experiment | None:
        """Atomically take the highest-priority queued experiment (compare-and-set)."""
        now = self.clock()
        with self._tx() as c:
            row = c.execute(
                "SELECT id FROM experiments WHERE status = 'queued' "
                "ORDER BY priority DESC, id ASC LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            cur = c.execute(
                "UPDATE experiments SET status = 'running', attempts = attempts + 1, "
                "worker_id = ?, device = ?, started_at = COALESCE(started_at, ?), heartbeat_at = ? "
                "WHERE id = ? AND status = 'queued'",
                (worker_id, device, now, now, row["id"]),
            )
            if cur.rowcount != 1:  # pragma: no cover - impossible under BEGIN IMMEDIATE
                return None
            self._event(c, row["id"], "claimed", f"claimed by {worker_id} on {device or '?'}")
        return self.get(row["id"])

    def _owned(self, c: sqlite3.Connection, exp_id: int, worker_id: str) -> sqlite3.Row:
        row = c.execute("SELECT * FROM experiments WHERE id = ?", (exp_id,)).fetchone()
        if row is None or row["status"] != "running" or row["worker_id"] != worker_id:
            raise LeaseLost(f"experiment {exp_id} is no longer held by worker {worker_id}")
        return row

    def flush(self, exp_id: int, worker_id: str, metrics: Sequence[tuple[str, int, float, float]] = (),
              step: int | None = None, total: int | None = None) -> bool:
        """Write buffered metrics + heartbeat + progress in one transaction.

        Metric points are unique per (experiment, key, step); a point re-sent after a resume
        is ignored, so a series never holds a step twice. Returns the cancel flag.
        """
        now = self.clock()
        with self._tx() as c:
            row = self._owned(c, exp_id, worker_id)
            c.executemany(
                "INSERT OR IGNORE INTO metrics (experiment_id, key, step, value, time) VALUES (?, ?, ?, ?, ?)",
                [(exp_id, k, int(s), float(v), float(t)) for k, s, v, t in metrics],
            )
            c.execute(
                "UPDATE experiments SET heartbeat_at = ?, step = COALESCE(?, step), "
                "total_steps = COALESCE(?, total_steps) WHERE id = ?",
                (now, step, total, exp_id),
            )
            return bool(row["cancel_requested"])

    def set_provenance(self, exp_id: int, worker_id: str, provenance: dict[str, Any]) -> None:
        with self._tx() as c:
            self._owned(c, exp_id, worker_id)
            c.execute(
                "UPDATE experiments SET provenance = ?, code_version = COALESCE(?, code_version) WHERE id = ?",
                (json.dumps(provenance, sort_keys=True), provenance.get("code_version"), exp_id),
            )

    def finish(self, exp_id: int, worker_id: str, status: str, error: str | None = None) -> None:
        if status not in TERMINAL:
            raise InvalidTransition(f"finish: {status!r} is not a terminal status")
        now = self.clock()
        with self._tx() as c:
            self._owned(c, exp_id, worker_id)
            c.execute(
                "UPDATE experiments SET status = ?, finished_at = ?, heartbeat_at = ?, error = ? WHERE id = ?",
                (status, now, now, error, exp_id),
            )
            self._event(c, exp_id, status, error.strip().splitlines()[-1] if error else status)

    def release(self, exp_id: int, worker_id: str, reason: str = "released") -> None:
        """Hand a running experiment back to the queue (drain, SIGTERM); it resumes later."""
        with self._tx() as c:
            self._owned(c, exp_id, worker_id)
            c.execute(
                "UPDATE experiments SET status = 'queued', worker_id = NULL, "
                "attempts = MAX(attempts - 1, 0) WHERE id = ?",
                (exp_id,),
            )
            self._event(c, exp_id, "requeued", reason)

    def requeue_stale(self, lease_s: float, now: float | None = None) -> list[int]:
        """Runs whose heartbeat is older than the lease are lost: requeue them (or fail them
        once their attempts are used up). Returns the ids touched."""
        now = self.clock() if now is None else now
        touched = []
        with self._tx() as c:
            rows = c.execute(
                "SELECT * FROM experiments WHERE status = 'running' AND heartbeat_at < ?",
                (now - lease_s,),
            ).fetchall()
            for r in rows:
                silent = now - (r["heartbeat_at"] or now)
                if r["attempts"] >= r["max_attempts"]:
                    msg = f"lost: no heartbeat for {silent:.0f}s after {r['attempts']} attempt(s)"
                    c.execute(
                        "UPDATE experiments SET status = 'failed', finished_at = ?, error = ?, "
                        "worker_id = NULL WHERE id = ?", (now, msg, r["id"]))
                    self._event(c, r["id"], "failed", msg)
                else:
                    c.execute("UPDATE experiments SET status = 'queued', worker_id = NULL WHERE id = ?",
                              (r["id"],))
                    self._event(c, r["id"], "requeued",
                                f"lost worker {r['worker_id']} (no heartbeat for {silent:.0f}s); requeued")
                touched.append(r["id"])
        return touched

    def request_cancel(self, ids: Sequence[int]) -> list[Experiment]:
        """Queued → cancelled now; running → flagged, the run stops within seconds."""
        now = self.clock()
        with self._tx() as c:
            rows = self._require(c, ids)
            final = [i for i, r in rows.items() if r["status"] in TERMINAL]
            if final:
                raise InvalidTransition(
                    f"experiment {final[0]} is already {rows[final[0]]['status']}; nothing to cancel")
            for i, r in rows.items():
                if r["status"] == "queued":
                    c.execute("UPDATE experiments SET status = 'cancelled', finished_at = ? WHERE id = ?",
                              (now, i))
                    self._event(c, i, "cancelled", "cancelled while queued")
                else:
                    c.execute("UPDATE experiments SET cancel_requested = 1 WHERE id = ?", (i,))
                    self._event(c, i, "cancel_requested", "cancel requested")
        return self.list_experiments(ids=list(ids))

    def retry(self, ids: Sequence[int]) -> list[Experiment]:
        """Terminal states are final, so a retry queues a fresh copy of a failed/cancelled run."""
        with self._tx() as c:
            rows = self._require(c, ids)
            bad = [i for i, r in rows.items() if r["status"] not in ("failed", "cancelled")]
            if bad:
                raise InvalidTransition(
                    f"experiment {bad[0]} is {rows[bad[0]]['status']}; only failed or cancelled runs can be retried")
        return self.clone(ids, retry=True)

    def clone(self, ids: Sequence[int], retry: bool = False) -> list[Experiment]:
        with self._tx() as c:
            rows = self._require(c, ids)
        return self.add_experiments(
            NewExperiment(name=r["name"], ratio=r["ratio"], seed=r["seed"], priority=r["priority"],
                          config=json.loads(r["config"]), code_version=r["code_version"] or "",
                          max_attempts=r["max_attempts"], retry_of=i if retry else None)
            for i, r in rows.items()
        )

    def remove(self, ids: Sequence[int]) -> int:
        with self._tx() as c:
            rows = self._require(c, ids)
            running = [i for i, r in rows.items() if r["status"] == "running"]
            if running:
                raise InvalidTransition(f"experiment {running[0]} is running; cancel it first")
            marks = ",".join("?" * len(ids))
            c.execute(f"DELETE FROM metrics WHERE experiment_id IN ({marks})", list(ids))
            c.execute(f"DELETE FROM events WHERE experiment_id IN ({marks})", list(ids))
            c.execute(f"DELETE FROM experiments WHERE id IN ({marks})", list(ids))
        return len(ids)

    # ----------------------------------------------------------------- metrics and events

    def metrics(self, exp_id: int | None = None, after_rowid: int = 0, prefix: str | None = None,
                keys: Sequence[str] | None = None) -> list[Metric]:
        where, params = ["rowid > ?"], [after_rowid]
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
        return [Metric(*r) for r in rows]

    def latest_metric(self, key: str) -> dict[int, float]:
        """Value of `key` at its highest step, per experiment."""
        rows = self._read(
            "SELECT m.experiment_id, m.value FROM metrics m JOIN "
            "(SELECT experiment_id, max(step) AS s FROM metrics WHERE key = ? GROUP BY experiment_id) x "
            "ON m.experiment_id = x.experiment_id AND m.step = x.s WHERE m.key = ?", (key, key))
        return {r[0]: r[1] for r in rows}

    def max_metric_rowid(self) -> int:
        return self._read("SELECT COALESCE(max(rowid), 0) FROM metrics")[0][0]

    def _event(self, c: sqlite3.Connection, exp_id: int | None, kind: str, message: str) -> None:
        c.execute("INSERT INTO events (experiment_id, time, kind, message) VALUES (?, ?, ?, ?)",
                  (exp_id, self.clock(), kind, message))

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

    # ----------------------------------------------------------------- workers

    def register_worker(self, worker_id: str, host: str, pid: int, device: str, log_path: str = "") -> None:
        now = self.clock()
        with self._tx() as c:
            c.execute(
                "INSERT OR REPLACE INTO workers (id, host, pid, device, started_at, heartbeat_at, "
                "experiment_id, status, stop_requested, log_path) VALUES (?, ?, ?, ?, ?, ?, NULL, 'idle', 0, ?)",
                (worker_id, host, pid, device, now, now, log_path))
            self._event(c, None, "worker", f"worker {worker_id} started on {host} ({device})")

    def worker_heartbeat(self, worker_id: str, experiment_id: int | None, status: str) -> bool:
        """Returns the worker's stop flag."""
        with self._tx() as c:
            c.execute("UPDATE workers SET heartbeat_at = ?, experiment_id = ?, status = ? WHERE id = ?",
                      (self.clock(), experiment_id, status, worker_id))
            row = c.execute("SELECT stop_requested FROM workers WHERE id = ?", (worker_id,)).fetchone()
        return bool(row and row[0])

    def request_worker_stop(self, worker_id: str | None = None) -> int:
        with self._tx() as c:
            if worker_id is None:
                cur = c.execute("UPDATE workers SET stop_requested = 1 WHERE status != 'stopped'")
            else:
                cur = c.execute("UPDATE workers SET stop_requested = 1 WHERE id = ? AND status != 'stopped'",
                                (worker_id,))
            return cur.rowcount

    def unregister_worker(self, worker_id: str) -> None:
        with self._tx() as c:
            c.execute("UPDATE workers SET status = 'stopped', experiment_id = NULL, heartbeat_at = ? "
                      "WHERE id = ?", (self.clock(), worker_id))
            self._event(c, None, "worker", f"worker {worker_id} stopped")

    def list_workers(self, include_stopped: bool = False) -> list[Worker]:
        sql = "SELECT * FROM workers" + ("" if include_stopped else " WHERE status != 'stopped'")
        return [
            Worker(r["id"], r["host"], r["pid"], r["device"], r["started_at"], r["heartbeat_at"],
                   r["experiment_id"], r["status"], bool(r["stop_requested"]), r["log_path"] or "")
            for r in self._read(sql + " ORDER BY started_at")
        ]

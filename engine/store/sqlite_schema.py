"""The SQLite schema and its migrations (`PRAGMA user_version` counts those applied).

Ordered migrations: index i moves the schema from version i to i + 1. Never edit a shipped entry;
append a new one.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlite_utils


def _v1(db: sqlite_utils.Database) -> None:
    db.table("experiments").create(
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
    db.table("experiments").create_index(["status", "priority", "id"])
    db.table("metrics").create(
        {"rowid": int, "experiment_id": int, "key": str, "step": int, "value": float,
         "time": float},
        pk="rowid",
        not_null={"experiment_id", "key", "step", "time"},
        foreign_keys=[("experiment_id", "experiments", "id")],
    )
    db.table("metrics").create_index(["experiment_id", "key", "step"], unique=True)
    db.table("events").create(
        {"id": int, "experiment_id": int, "time": float, "kind": str, "message": str},
        pk="id",
        not_null={"time", "kind", "message"},
    )
    db.table("events").create_index(["experiment_id", "id"])
    db.table("workers").create(
        {"id": str, "host": str, "pid": int, "device": str, "started_at": float,
         "heartbeat_at": float, "experiment_id": int, "status": str, "stop_requested": int,
         "log_path": str},
        pk="id",
        defaults={"stop_requested": 0, "log_path": ""},
    )


def _v2(db: sqlite_utils.Database) -> None:
    # The dashboard's "latest value of key K for every experiment" reads by key first.
    db.table("metrics").create_index(["key", "experiment_id", "step"])


def _v3(db: sqlite_utils.Database) -> None:
    # SQLite reuses the highest INTEGER PRIMARY KEY after a delete, and a run directory
    # (runs/<id>/, checkpoints included) is keyed by id: a reused id would resume a deleted
    # experiment's checkpoint. The meta row remembers the highest id ever handed out.
    db.table("meta").create({"key": str, "value": int}, pk="key")
    db.execute("INSERT INTO meta (key, value) "
               "SELECT 'last_experiment_id', COALESCE(max(id), 0) FROM experiments")


def _v4(db: sqlite_utils.Database) -> None:
    # Metric and event ids must never be reused either: the dashboard reads "rows after my
    # cursor", and a plain INTEGER PRIMARY KEY hands a deleted row's id to the next insert, so
    # after `queue rm` new points hid behind the cursor. AUTOINCREMENT needs a table rebuild.
    # Also: sweep factors per experiment, and when the current attempt started (for the ETA).
    db.execute("""CREATE TABLE metrics_v4 (
        rowid INTEGER PRIMARY KEY AUTOINCREMENT,
        experiment_id INTEGER NOT NULL REFERENCES experiments(id),
        key TEXT NOT NULL, step INTEGER NOT NULL, value FLOAT, time FLOAT NOT NULL)""")
    db.execute("INSERT INTO metrics_v4 (rowid, experiment_id, key, step, value, time) "
               "SELECT rowid, experiment_id, key, step, value, time FROM metrics")
    db.execute("DROP TABLE metrics")
    db.execute("ALTER TABLE metrics_v4 RENAME TO metrics")
    db.table("metrics").create_index(["experiment_id", "key", "step"], unique=True)
    db.table("metrics").create_index(["key", "experiment_id", "step"])
    db.execute("""CREATE TABLE events_v4 (
        id INTEGER PRIMARY KEY AUTOINCREMENT, experiment_id INTEGER,
        time FLOAT NOT NULL, kind TEXT NOT NULL, message TEXT NOT NULL)""")
    db.execute("INSERT INTO events_v4 (id, experiment_id, time, kind, message) "
               "SELECT id, experiment_id, time, kind, message FROM events")
    db.execute("DROP TABLE events")
    db.execute("ALTER TABLE events_v4 RENAME TO events")
    db.table("events").create_index(["experiment_id", "id"])
    db.execute("ALTER TABLE experiments ADD COLUMN factors TEXT NOT NULL DEFAULT '{}'")
    db.execute("ALTER TABLE experiments ADD COLUMN attempt_started_at FLOAT")
    db.execute("ALTER TABLE experiments ADD COLUMN attempt_start_step INTEGER NOT NULL DEFAULT 0")


def _v5(db: sqlite_utils.Database) -> None:
    # The user's tags (a sorted JSON list) and note (`optical tag`, `optical note`).
    db.execute("ALTER TABLE experiments ADD COLUMN tags TEXT NOT NULL DEFAULT '[]'")
    db.execute("ALTER TABLE experiments ADD COLUMN note TEXT NOT NULL DEFAULT ''")


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_v1, _v2, _v3, _v4, _v5]
SCHEMA_VERSION = len(MIGRATIONS)

"""A whole study in and out of PostgreSQL (`optical db copy`, engine/store/copy.py): read in one
snapshot, written with COPY in one transaction, every id kept."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import DictRow

from engine.errors import StoreError
from engine.store.records import MetricPoint, StudyExport
from engine.store.rows import (
    EVENT_COLUMNS,
    EXPERIMENT_COLUMNS,
    ID_TABLES,
    METRIC_VALUE_COLUMNS,
    event_from_row,
    event_values,
    experiment_from_row,
    experiment_values,
    metric_values,
    point_from_row,
    refuse_non_empty,
)

#: The last id a table's identity sequence handed out (0 if none), for the table named by the
#: parameter.
SEQUENCE_LAST = ("COALESCE(pg_sequence_last_value(pg_get_serial_sequence(%s, 'id')::regclass), "
                 "0)")


def last_ids(cur: psycopg.Cursor[DictRow]) -> dict[str, int]:
    out = {}
    for table in ID_TABLES:
        query = sql.SQL(f"SELECT GREATEST({SEQUENCE_LAST}, COALESCE(max(id), 0)) AS last "
                        "FROM {}")
        row = cur.execute(query.format(sql.Identifier(table)), (table,)).fetchone()
        out[table] = int(row["last"]) if row else 0
    return out


@contextmanager
def export_study(conn: psycopg.Connection[DictRow],
                 error: Callable[[psycopg.Error], StoreError]) -> Iterator[StudyExport]:
    """Everything in one snapshot, held until exit; `error` words a driver error."""
    try:
        with conn.transaction():
            # One snapshot for the whole export; the copy may take a while between fetches.
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            conn.execute("SET LOCAL idle_in_transaction_session_timeout = 0")
            with conn.cursor() as cur:
                experiments = [experiment_from_row(r) for r in
                               cur.execute("SELECT * FROM experiments ORDER BY id")]
                events = [event_from_row(r) for r in
                          cur.execute("SELECT * FROM events ORDER BY id")]
                count_row = cur.execute("SELECT count(*) AS n FROM metrics").fetchone()
                last = last_ids(cur)

            def points() -> Iterator[MetricPoint]:
                try:
                    with conn.cursor(name="optical_export") as named:
                        named.itersize = 10_000
                        named.execute("SELECT id, experiment_id, key, step, value, time "
                                      "FROM metrics ORDER BY id")
                        yield from (point_from_row(r) for r in named)
                except psycopg.Error as exc:
                    raise error(exc) from None

            count = int(count_row["n"]) if count_row else 0
            yield StudyExport(experiments, events, points(), count, last)
    except psycopg.Error as exc:
        raise error(exc) from None


def _copy(cur: psycopg.Cursor[DictRow], table: str, columns: Sequence[str],
          rows: Iterable[tuple[Any, ...]]) -> int:
    n = 0
    with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)))) as cp:
        for row in rows:
            cp.write_row(row)
            n += 1
    return n


def import_study(cur: psycopg.Cursor[DictRow], location: str,
                 study: StudyExport) -> dict[str, int]:
    """Inside the caller's transaction: refuse a store that is not new and empty, then fill it."""
    # Nobody may write while we check that the store is empty and fill it.
    cur.execute("LOCK TABLE experiments, metrics, events IN EXCLUSIVE MODE")
    held = {}
    for table in ID_TABLES:
        row = cur.execute(sql.SQL("SELECT count(*) AS n FROM {}").format(
            sql.Identifier(table))).fetchone()
        held[table] = int(row["n"]) if row else 0
    refusal = refuse_non_empty(location, held, last_ids(cur))
    if refusal:
        raise StoreError(refusal)
    counts = {
        "experiments": _copy(cur, "experiments", EXPERIMENT_COLUMNS,
                             map(experiment_values, study.experiments)),
        "metrics": _copy(cur, "metrics", ("id", *METRIC_VALUE_COLUMNS),
                         map(metric_values, study.metrics)),
        "events": _copy(cur, "events", EVENT_COLUMNS, map(event_values, study.events)),
    }
    # Later ids continue after the source's: ids are never handed out twice.
    top = last_ids(cur)
    for table in ID_TABLES:
        last = max(study.last_ids.get(table, 0), top[table])
        if last > 0:
            cur.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s, true)",
                        (table, last))
    return counts
